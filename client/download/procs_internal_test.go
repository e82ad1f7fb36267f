package download

import "testing"

// The GOMAXPROCS variable counts only as the runtime reads it: a positive
// number. Anything else leaves the default, which RaiseProcsForDirectIO
// raises.
func TestProcsFor(t *testing.T) {
	for _, c := range []struct {
		env  string
		want int
	}{{"", 2 + IOProcs}, {"3", 2}, {"1", 2}, {"0", 2 + IOProcs}, {"-1", 2 + IOProcs}, {"abc", 2 + IOProcs}, {" 3", 2 + IOProcs}} {
		if got := procsFor(c.env, 2); got != c.want {
			t.Errorf("procsFor(%q, 2) = %d, want %d", c.env, got, c.want)
		}
	}
}
