// Package shachain splits a SHA-256 computation at block boundaries: the
// chaining value (the eight words H of FIPS 180-4) after each piece of a
// file lets each piece be hashed on its own, in parallel and in any order,
// and still be checked as part of the whole file's sha256.
//
// Ingest records the chaining value after each piece; a downloader checks
// piece i by resuming the hash from the value after piece i-1 (the initial
// value for piece 0) and comparing the value after it or, for the last
// piece, the final sum with the file's sha256. One hash pass then checks
// every piece and the whole file.
//
// crypto/sha256 exposes its state only through MarshalBinary: "sha\x03",
// the eight words H big-endian, the 64-byte block buffer, the length
// big-endian. Usable checks once that this still holds, so that a
// different layout makes callers fall back to hashing pieces and file apart.
package shachain

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"
	"sync"
)

const (
	magic     = "sha\x03"
	stateSize = len(magic) + sha256.Size + sha256.BlockSize + 8
)

// Value returns h's chaining value when h is a sha256 that has hashed a
// whole number of blocks; else nil.
func Value(h hash.Hash) []byte {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil
	}
	st, err := m.MarshalBinary()
	if err != nil || len(st) != stateSize || string(st[:len(magic)]) != magic ||
		binary.BigEndian.Uint64(st[stateSize-8:])%sha256.BlockSize != 0 {
		return nil
	}
	return bytes.Clone(st[len(magic) : len(magic)+sha256.Size])
}

// Resume returns a sha256 that continues from chaining value cv after n
// bytes, n a multiple of the block size; a nil cv is the start (n 0).
// Call it only when Usable.
func Resume(cv []byte, n int64) hash.Hash {
	if cv == nil {
		return sha256.New()
	}
	h, err := resume(cv, n)
	if err != nil {
		panic("shachain: sha256 state layout changed after Usable checked it: " + err.Error())
	}
	return h
}

func resume(cv []byte, n int64) (hash.Hash, error) {
	st := make([]byte, 0, stateSize)
	st = append(st, magic...)
	st = append(st, cv...)
	st = append(st, make([]byte, sha256.BlockSize)...)
	st = binary.BigEndian.AppendUint64(st, uint64(n))
	h := sha256.New()
	return h, h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st)
}

// Usable reports whether crypto/sha256's state has the layout Value and
// Resume assume: two blocks hashed in one go and in two, through the
// chaining value, give the same sum.
var Usable = sync.OnceValue(func() bool {
	data := bytes.Repeat([]byte("vmapp chain check"), 8)[:2*sha256.BlockSize]
	first := sha256.New()
	first.Write(data[:sha256.BlockSize])
	cv := Value(first)
	if cv == nil {
		return false
	}
	h, err := resume(cv, sha256.BlockSize)
	if err != nil {
		return false
	}
	h.Write(data[sha256.BlockSize:])
	want := sha256.Sum256(data)
	return bytes.Equal(h.Sum(nil), want[:])
})
