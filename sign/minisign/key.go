package minisign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/scrypt"
)

// PublicKey is a verifying key and its id.
type PublicKey struct {
	ID  KeyID
	Key ed25519.PublicKey
}

const publicKeySize = 2 + 8 + ed25519.PublicKeySize

// ParsePublicKey parses the one-line form of a public key, what
// `minisign -P` takes: base64 of "Ed" || key id || key.
func ParsePublicKey(s string) (PublicKey, error) {
	return parsePublicKey([]string{s}, 1)
}

func parsePublicKey(ls []string, n int) (PublicKey, error) {
	b, err := decodeLine("public key", ls, n, publicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	if [2]byte(b[:2]) != algEd {
		return PublicKey{}, fail("public key", nil, "unknown signature algorithm %q, want %q", b[:2], algEd[:])
	}
	return PublicKey{ID: KeyID(b[2:10]), Key: ed25519.PublicKey(b[10:])}, nil
}

// DecodePublicKey parses a public key file: an untrusted comment line and
// the key's line.
func DecodePublicKey(data []byte) (PublicKey, error) {
	ls, err := lines("public key", data)
	if err != nil {
		return PublicKey{}, err
	}
	if _, err := comment("public key", ls, 1, commentPrefix, maxComment); err != nil {
		return PublicKey{}, err
	}
	k, err := parsePublicKey(ls, 2)
	if err != nil {
		return PublicKey{}, err
	}
	return k, noMore("public key", ls, 2)
}

// ReadPublicKeyFile reads a public key file; errors name the file.
func ReadPublicKeyFile(path string) (PublicKey, error) {
	data, err := readFile(path)
	if err != nil {
		return PublicKey{}, err
	}
	k, err := DecodePublicKey(data)
	if err != nil {
		return PublicKey{}, inFile(path, err)
	}
	return k, nil
}

// String is the one-line form (what `minisign -P` takes).
func (k PublicKey) String() string {
	b := make([]byte, 0, publicKeySize)
	b = append(append(append(b, algEd[:]...), k.ID[:]...), k.Key...)
	return b64.EncodeToString(b)
}

// Encode is the public key file, byte for byte as minisign writes it: its
// comment names the key id in hex without leading zeros (minisign's
// PRIX64), unlike KeyID.String's fixed 16 digits.
func (k PublicKey) Encode() []byte {
	return fmt.Appendf(nil, "%sminisign public key %X\n%s\n", commentPrefix, binary.LittleEndian.Uint64(k.ID[:]), k)
}

// Equal reports whether k and o are the same key with the same id.
func (k PublicKey) Equal(o PublicKey) bool {
	return k.ID == o.ID && k.Key.Equal(o.Key)
}

// PrivateKey is a signing key and its id.
type PrivateKey struct {
	ID  KeyID
	Key ed25519.PrivateKey
}

// GenerateKey makes a key pair with a random id, reading rand.
func GenerateKey(rand io.Reader) (PrivateKey, error) {
	var id KeyID
	if _, err := io.ReadFull(rand, id[:]); err != nil {
		return PrivateKey{}, err
	}
	_, sk, err := ed25519.GenerateKey(rand)
	if err != nil {
		return PrivateKey{}, err
	}
	return PrivateKey{ID: id, Key: sk}, nil
}

// Public is the key's public half.
func (k PrivateKey) Public() PublicKey {
	return PublicKey{ID: k.ID, Key: k.Key.Public().(ed25519.PublicKey)}
}

// KDF is the cost of the scrypt that encrypts a secret key, in libsodium's
// terms (crypto_pwhash_scryptsalsa208sha256).
type KDF struct {
	OpsLimit, MemLimit uint64
}

// DefaultKDF is what minisign uses (libsodium's _SENSITIVE limits): scrypt
// with N = 2^20, r = 8, p = 1, which needs 1 GiB of memory. Reading a key
// file that asks for more than either limit is refused, so that a file
// can't make the reader spend unbounded memory or time.
var DefaultKDF = KDF{OpsLimit: 1 << 25, MemLimit: 1 << 30}

// params derives scrypt's N, r and p as libsodium does (pickparams).
func (k KDF) params() (n, r, p int, err error) {
	if k.OpsLimit > DefaultKDF.OpsLimit || k.MemLimit > DefaultKDF.MemLimit {
		return 0, 0, 0, fmt.Errorf("KDF limits opslimit %d, memlimit %d exceed minisign's (%d, %d)",
			k.OpsLimit, k.MemLimit, DefaultKDF.OpsLimit, DefaultKDF.MemLimit)
	}
	ops := max(k.OpsLimit, 32768)
	r = 8
	logN := func(maxN uint64) int {
		l := 1
		for ; l < 63 && uint64(1)<<l <= maxN/2; l++ {
		}
		return l
	}
	if ops < k.MemLimit/32 {
		p = 1
		n = 1 << logN(ops/uint64(r*4))
	} else {
		l := logN(k.MemLimit / uint64(r*128))
		n = 1 << l
		p = int((ops/4)>>l) / r
	}
	if p < 1 {
		return 0, 0, 0, fmt.Errorf("KDF limits opslimit %d, memlimit %d give scrypt p = 0", k.OpsLimit, k.MemLimit)
	}
	return n, r, p, nil
}

// The layout of a secret key.
const (
	skSalt     = 6
	skOps      = skSalt + 32
	skMem      = skOps + 8
	skKeyID    = skMem + 8 // the encrypted part starts here
	skKey      = skKeyID + 8
	skChecksum = skKey + ed25519.PrivateKeySize
	skSize     = skChecksum + 32
)

// checksum is BLAKE2b-256 of "Ed" || key id || secret key.
func checksum(id KeyID, sk []byte) []byte {
	h, _ := blake2b.New256(nil)
	h.Write(algEd[:])
	h.Write(id[:])
	h.Write(sk)
	return h.Sum(nil)
}

// keystream is the scrypt output that encrypts the last part of sk.
func keystream(sk []byte, passphrase []byte, kdf KDF) ([]byte, error) {
	n, r, p, err := kdf.params()
	if err != nil {
		return nil, err
	}
	return scrypt.Key(passphrase, sk[skSalt:skOps], n, r, p, skSize-skKeyID)
}

// Encode is the secret key file. With a passphrase the key is encrypted
// with kdf's cost and a salt read from rand; with none (nil) it is not,
// as `minisign -G -W` leaves it (vmapp still writes the checksum, which
// minisign ignores in unencrypted keys).
func (k PrivateKey) Encode(passphrase []byte, kdf KDF, rand io.Reader) ([]byte, error) {
	if len(k.Key) != ed25519.PrivateKeySize {
		return nil, fail("secret key", nil, "wrong length: %d bytes, want %d", len(k.Key), ed25519.PrivateKeySize)
	}
	sk := make([]byte, skSize)
	copy(sk, algEd[:])
	copy(sk[4:], chkBlake2b[:])
	copy(sk[skKeyID:], k.ID[:])
	copy(sk[skKey:], k.Key)
	copy(sk[skChecksum:], checksum(k.ID, k.Key))
	label := "unencrypted"
	if passphrase != nil {
		if len(passphrase) == 0 {
			return nil, fail("secret key", nil, "empty passphrase")
		}
		copy(sk[2:], kdfScrypt[:])
		if _, err := io.ReadFull(rand, sk[skSalt:skOps]); err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint64(sk[skOps:], kdf.OpsLimit)
		binary.LittleEndian.PutUint64(sk[skMem:], kdf.MemLimit)
		stream, err := keystream(sk, passphrase, kdf)
		if err != nil {
			return nil, fail("secret key", nil, "%v", err)
		}
		subtle.XORBytes(sk[skKeyID:], sk[skKeyID:], stream)
		label = "encrypted"
	}
	return fmt.Appendf(nil, "%sminisign %s secret key\n%s\n", commentPrefix, label, b64.EncodeToString(sk)), nil
}

// SecretKeyFile is a parsed secret key file, maybe still encrypted.
type SecretKeyFile struct {
	raw  []byte
	path string // when read from a file, for errors
}

// DecodeSecretKey parses a secret key file; Decrypt gives the key.
func DecodeSecretKey(data []byte) (*SecretKeyFile, error) {
	ls, err := lines("secret key", data)
	if err != nil {
		return nil, err
	}
	if _, err := comment("secret key", ls, 1, commentPrefix, maxComment); err != nil {
		return nil, err
	}
	sk, err := decodeLine("secret key", ls, 2, skSize)
	if err != nil {
		return nil, err
	}
	if err := noMore("secret key", ls, 2); err != nil {
		return nil, err
	}
	switch {
	case [2]byte(sk[:2]) != algEd:
		return nil, fail("secret key", nil, "unknown signature algorithm %q, want %q", sk[:2], algEd[:])
	case [2]byte(sk[2:4]) != kdfScrypt && [2]byte(sk[2:4]) != kdfNone:
		return nil, fail("secret key", nil, "unknown key derivation function %q, want %q or none", sk[2:4], kdfScrypt[:])
	case [2]byte(sk[4:6]) != chkBlake2b:
		return nil, fail("secret key", nil, "unknown checksum algorithm %q, want %q", sk[4:6], chkBlake2b[:])
	}
	return &SecretKeyFile{raw: sk}, nil
}

// ReadSecretKeyFile reads a secret key file; errors name the file.
func ReadSecretKeyFile(path string) (*SecretKeyFile, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	f, err := DecodeSecretKey(data)
	if err != nil {
		return nil, inFile(path, err)
	}
	f.path = path
	return f, nil
}

// Encrypted reports whether Decrypt needs a passphrase.
func (f *SecretKeyFile) Encrypted() bool { return [2]byte(f.raw[2:4]) == kdfScrypt }

// KDF is the cost of decrypting the key.
func (f *SecretKeyFile) KDF() KDF {
	return KDF{OpsLimit: binary.LittleEndian.Uint64(f.raw[skOps:]), MemLimit: binary.LittleEndian.Uint64(f.raw[skMem:])}
}

// Decrypt returns the key, decrypting it with passphrase when it is
// encrypted (the passphrase is ignored when it is not).
func (f *SecretKeyFile) Decrypt(passphrase []byte) (PrivateKey, error) {
	k, err := f.decrypt(passphrase)
	if err != nil && f.path != "" {
		err = inFile(f.path, err)
	}
	return k, err
}

func (f *SecretKeyFile) decrypt(passphrase []byte) (PrivateKey, error) {
	sk := bytes.Clone(f.raw)
	zeroSum := make([]byte, 32)
	if f.Encrypted() {
		if len(passphrase) == 0 {
			return PrivateKey{}, fail("secret key", ErrEncrypted, "none given")
		}
		stream, err := keystream(sk, passphrase, f.KDF())
		if err != nil {
			return PrivateKey{}, fail("secret key", nil, "%v", err)
		}
		subtle.XORBytes(sk[skKeyID:], sk[skKeyID:], stream)
		zeroSum = nil // an encrypted key's checksum is always checked
	}
	k := PrivateKey{ID: KeyID(sk[skKeyID:skKey]), Key: ed25519.PrivateKey(sk[skKey:skChecksum])}
	sum := sk[skChecksum:]
	if !bytes.Equal(sum, zeroSum) && subtle.ConstantTimeCompare(sum, checksum(k.ID, k.Key)) != 1 {
		if f.Encrypted() {
			return PrivateKey{}, fail("secret key", ErrWrongPassphrase, "the decrypted key does not match its checksum")
		}
		return PrivateKey{}, fail("secret key", nil, "checksum mismatch: the key is damaged")
	}
	// A zero checksum (minisign -W) checks nothing: the public half must
	// at least be the seed's.
	if !ed25519.NewKeyFromSeed(k.Key.Seed()).Equal(k.Key) {
		return PrivateKey{}, fail("secret key", nil, "damaged: its public half is not its seed's")
	}
	return k, nil
}
