package redact_test

import (
	"testing"

	"github.com/vmapp/vmapp/internal/redact"
)

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"https://h.example/c/pkg.tgz", "https://h.example/c/pkg.tgz"},
		{"https://acct.blob.core.windows.net/c/pkg.tgz?sv=2024&sig=SECRET%3D", "https://acct.blob.core.windows.net/c/pkg.tgz?(query redacted)"},
		{"http://127.0.0.1:9000/b/k?X-Amz-Signature=SECRET&X-Amz-Expires=3600", "http://127.0.0.1:9000/b/k?(query redacted)"},
		{"https://user:SECRET@h.example/p", "https://h.example/p"},
		{"https://h.example/p#SECRET", "https://h.example/p"},
		{"https://h.example/p?", "https://h.example/p?(query redacted)"},
		{"https://h.example/a%20b/p?sig=SECRET", "https://h.example/a%20b/p?(query redacted)"},
		{"https://h.example/p\x7f?sig=SECRET", "(invalid URL)"},
		{"http://[::1/p?sig=SECRET", "(invalid URL)"},
	} {
		if got := redact.URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
