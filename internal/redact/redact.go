// Package redact keeps secrets out of what vmapp prints and logs.
package redact

import "net/url"

// URL returns u for messages and logs: without its query (a SAS token or a
// presigned signature is a secret), fragment and user information, with
// "?(query redacted)" where a query was. A string that isn't a URL is
// "(invalid URL)": it can't be told what in it is secret.
func URL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid URL)"
	}
	hadQuery := p.RawQuery != "" || p.ForceQuery
	p.RawQuery, p.ForceQuery, p.User, p.Fragment, p.RawFragment = "", false, nil, "", ""
	if hadQuery {
		return p.String() + "?(query redacted)"
	}
	return p.String()
}
