package sshconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// sftpPkt builds an SFTP packet: length prefix, type, body.
func sftpPkt(typ byte, body ...[]byte) []byte {
	b := []byte{typ}
	for _, x := range body {
		b = append(b, x...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func str(s string) []byte { return append(u32(uint32(len(s))), s...) }

// runQuery runs querySFTPLimits against a server that answers with
// version and then reply; it also returns what the client sent.
func runQuery(t *testing.T, version, reply []byte) (*SFTPLimits, []byte, []byte, error) {
	t.Helper()
	var sent bytes.Buffer
	in := bytes.NewReader(append(append([]byte{}, version...), reply...))
	v, l, err := querySFTPLimits(in, &sent)
	return l, v, sent.Bytes(), err
}

func TestQuerySFTPLimits(t *testing.T) {
	initPkt := []byte{0, 0, 0, 5, 1, 0, 0, 0, 3}
	limitsReq := sftpPkt(200, u32(1), str("limits@openssh.com"))
	withLimits := sftpPkt(2, u32(3), str("posix-rename@openssh.com"), str("1"), str("limits@openssh.com"), str("1"))
	t.Run("offered", func(t *testing.T) {
		reply := sftpPkt(201, u32(1), u64(262144), u64(261120), u64(261120), u64(0))
		l, v, sent, err := runQuery(t, withLimits, reply)
		if err != nil {
			t.Fatal(err)
		}
		if want := (SFTPLimits{MaxPacket: 262144, MaxRead: 261120, MaxWrite: 261120}); l == nil || *l != want {
			t.Fatalf("limits %+v, want %+v", l, want)
		}
		if !bytes.Equal(v, withLimits) {
			t.Errorf("version packet %x, want %x", v, withLimits)
		}
		if want := append(append([]byte{}, initPkt...), limitsReq...); !bytes.Equal(sent, want) {
			t.Errorf("sent %x, want %x", sent, want)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		version := sftpPkt(2, u32(3), str("posix-rename@openssh.com"), str("1"))
		l, v, sent, err := runQuery(t, version, nil)
		if err != nil || l != nil || !bytes.Equal(v, version) || !bytes.Equal(sent, initPkt) {
			t.Fatalf("limits %+v, version %x, sent %x, err %v", l, v, sent, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		reply := sftpPkt(101, u32(1), u32(8), str("unsupported"), str(""))
		l, _, _, err := runQuery(t, withLimits, reply)
		if err != nil || l != nil {
			t.Fatalf("limits %+v, err %v; want none, no error", l, err)
		}
	})
	for name, c := range map[string]struct {
		version, reply []byte
		want           string
	}{
		"not a version": {sftpPkt(101, u32(0)), nil, "message type 101"},
		"short reply":   {withLimits, sftpPkt(201, u32(1), u64(1)), "short reply"},
		"other id":      {withLimits, sftpPkt(201, u32(7), u64(1), u64(1), u64(1), u64(1)), "another request"},
		"odd type":      {withLimits, sftpPkt(103, u32(1), str("x")), "unexpected reply type 103"},
		"huge packet":   {u32(1 << 30), nil, "SFTP packet of"},
		"cut":           {withLimits[:10], nil, "unexpected EOF"},
		"closed":        {nil, nil, "EOF"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := runQuery(t, c.version, c.reply)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one with %q", err, c.want)
			}
		})
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// TestInitSkipper: the first packet (pkg/sftp's INIT, in any split) is
// dropped, everything after it passes unchanged.
func TestInitSkipper(t *testing.T) {
	initPkt := []byte{0, 0, 0, 5, 1, 0, 0, 0, 3}
	next := sftpPkt(17, u32(1), str("/"))
	stream := append(append([]byte{}, initPkt...), next...)
	for _, cuts := range [][]int{nil, {4}, {2, 5, 9}, {9}, {12}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}} {
		var out bytes.Buffer
		k := &initSkipper{w: nopWriteCloser{&out}}
		prev := 0
		for _, c := range append(cuts, len(stream)) {
			if n, err := k.Write(stream[prev:c]); err != nil || n != c-prev {
				t.Fatalf("cuts %v: Write = %d, %v", cuts, n, err)
			}
			prev = c
		}
		if !bytes.Equal(out.Bytes(), next) {
			t.Errorf("cuts %v: passed %x, want %x", cuts, out.Bytes(), next)
		}
	}
	k := &initSkipper{w: nopWriteCloser{io.Discard}}
	if _, err := k.Write(next); err == nil {
		t.Error("a first packet other than init was accepted")
	}
	r := &replayReader{pre: []byte("ab"), r: strings.NewReader("cd")}
	if b, err := io.ReadAll(r); err != nil || string(b) != "abcd" {
		t.Errorf("replayReader read %q, %v", b, err)
	}
}
