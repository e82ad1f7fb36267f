package shachain

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// TestPiecesInAnyOrder hashes a file piece by piece, last piece first,
// each resumed from the previous piece's chaining value, and checks that
// the chain ends in the file's sha256 and that a changed byte breaks it.
func TestPiecesInAnyOrder(t *testing.T) {
	if !Usable() {
		t.Fatal("crypto/sha256's state layout is not the one shachain knows")
	}
	const piece = 4 * sha256.BlockSize
	data := make([]byte, 5*piece+17)
	rand.Read(data)
	// What ingest records: the value after each whole piece.
	var chain [][]byte
	h := sha256.New()
	for off := 0; off+piece < len(data); off += piece {
		h.Write(data[off : off+piece])
		chain = append(chain, Value(h))
	}
	h.Write(data[len(chain)*piece:])
	if Value(h) != nil {
		t.Fatal("Value of a hash that ends mid-block must be nil")
	}
	want := sha256.Sum256(data)
	check := func(data []byte) (bad []int) {
		for i := len(chain); i >= 0; i-- {
			var cv []byte
			if i > 0 {
				cv = chain[i-1]
			}
			h := Resume(cv, int64(i*piece))
			end := min((i+1)*piece, len(data))
			h.Write(data[i*piece : end])
			if i == len(chain) && !bytes.Equal(h.Sum(nil), want[:]) || i < len(chain) && !bytes.Equal(Value(h), chain[i]) {
				bad = append(bad, i)
			}
		}
		return bad
	}
	if bad := check(data); len(bad) != 0 {
		t.Fatalf("pieces %v of the intact file fail", bad)
	}
	for _, at := range []int{0, piece + 3, 3*piece - 1, len(data) - 1} {
		c := bytes.Clone(data)
		c[at] ^= 1
		if bad := check(c); len(bad) != 1 || bad[0] != at/piece {
			t.Fatalf("byte %d changed: pieces %v fail, want [%d]", at, bad, at/piece)
		}
	}
}

func TestValueOfOtherHashes(t *testing.T) {
	if Value(sha256.New224()) != nil {
		t.Fatal("a sha224 state is not a sha256 chaining value")
	}
}
