package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/internal/pbjson"
)

// marshal encodes m as compact JSON with its 64-bit integers as numbers
// (protojson writes them as strings: {"sizeBytes": "1024"}), as az prints
// them, so that a query can compare them and jq reads them as numbers.
func marshal(m proto.Message) ([]byte, error) { return pbjson.Marshal(m) }

// printJSON prints one resource.
func (c *cli) printJSON(m proto.Message) error {
	raw, err := marshal(m)
	if err != nil {
		return err
	}
	return c.emit(raw)
}

// printJSONList prints resources as Azure's list responses do:
// {"value": [...]}, with "nextPageToken" when --top cut the listing short:
// the token to pass to --skip-token. Azure's responses name a URL to GET
// "nextLink"; this is a token, not a URL, so it keeps the API's name for
// it (ListXResponse.next_page_token).
func printJSONList[T proto.Message](c *cli, items []T, next string) error {
	value, err := marshalAll(items)
	if err != nil {
		return err
	}
	return c.printIndented(struct {
		Value         []json.RawMessage `json:"value"`
		NextPageToken string            `json:"nextPageToken,omitempty"`
	}{value, next})
}

// marshalAll marshals each message as marshal does; never nil, so an empty
// list prints as [].
func marshalAll[T proto.Message](items []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(items))
	for _, m := range items {
		raw, err := marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}

// printIndented prints v as -o and --query say.
func (c *cli) printIndented(v any) error {
	raw, err := pbjson.Encode(v)
	if err != nil {
		return err
	}
	return c.emit(raw)
}

// table prints aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// details prints "Key: value" lines with the values aligned; empty values
// are left out.
type details struct{ tw *tabwriter.Writer }

func newDetails(w io.Writer) *details {
	return &details{tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)}
}

func (d *details) add(key, value string) {
	if value == "" {
		return
	}
	fmt.Fprintf(d.tw, "%s:\t%s\n", key, value)
}

func (d *details) flush() error { return d.tw.Flush() }

// printNextToken ends a table listing cut short by --top with the token
// to continue from.
func printNextToken(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "\nMore: continue with --skip-token %s\n", next)
	}
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func formatDate(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	t := ts.AsTime().UTC()
	if t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0 {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// formatBytes prints a size in binary units: 1.5 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
