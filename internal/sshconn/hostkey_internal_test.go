package sshconn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"reflect"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestHostKeyAlgorithmsOrder: the algorithms offered for the known keys
// follow the library's preference, not the order of known_hosts lines.
func TestHostKeyAlgorithmsOrder(t *testing.T) {
	pub := func(k any) ssh.PublicKey {
		p, err := ssh.NewPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &hostCheck{known: []knownhosts.KnownKey{
		{Key: pub(&rk.PublicKey)}, {Key: pub(&ek.PublicKey)}, {Key: pub(edPub)},
	}}
	got := c.algorithms()
	var want []string
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		switch a {
		case ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519:
			want = append(want, a)
		}
	}
	want = append(want, ssh.KeyAlgoRSA) // SHA-1 RSA: not in the list, kept last for old servers
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("algorithms() = %q, want %q", got, want)
	}
}
