package sshconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTPLimits are the limits an SFTP server states through the
// limits@openssh.com extension (OpenSSH 8.7 and later): the largest
// packet, the largest read and write it serves, and how many handles it
// keeps open (0: no limit). Read and write lengths of 0 mean unknown.
type SFTPLimits struct {
	MaxPacket, MaxRead, MaxWrite, MaxHandles uint64
}

// SFTP protocol message types and limits used by the limits query.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpStatus        = 101
	fxpExtended      = 200
	fxpExtendedReply = 201
	sftpVersion      = 3
	limitsExtension  = "limits@openssh.com"
	// sftpMaxMessage bounds a reply read before pkg/sftp takes over (the
	// message limit of pkg/sftp and of OpenSSH's sftp-server).
	sftpMaxMessage = 256 << 10
)

// SFTPWithLimits opens an SFTP session like SFTP, but first asks the
// server for its limits: it sends the protocol's INIT itself and, when the
// server's VERSION offers limits@openssh.com, one limits@openssh.com
// request, then hands the session to pkg/sftp (its own INIT is answered
// with the VERSION already received: one session, one INIT on the wire).
// tune gets the limits (nil when the server does not state them) and
// returns options applied after opts; it may raise the packet size up to
// what the server accepts. A server that fails the query in an
// unexpected way is an error, as any broken SFTP session.
func (c *Client) SFTPWithLimits(tune func(*SFTPLimits) []sftp.ClientOption, opts ...sftp.ClientOption) (*sftp.Client, *SFTPLimits, error) {
	s, err := c.client.NewSession()
	if err != nil {
		return nil, nil, c.wrapErr("open SFTP session", err)
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, nil, c.wrapErr("open SFTP session", err)
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, nil, c.wrapErr("open SFTP session", err)
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, nil, c.wrapErr("open SFTP session", err)
	}
	version, limits, err := querySFTPLimits(r, w)
	if err != nil {
		s.Close()
		return nil, nil, c.wrapErr("open SFTP session", err)
	}
	all := append(sftpDefaults(), opts...)
	if tune != nil {
		all = append(all, tune(limits)...)
	}
	sc, err := sftp.NewClientPipe(&replayReader{pre: version, r: r}, &initSkipper{w: w, s: s}, all...)
	if err != nil {
		s.Close()
		return nil, nil, c.wrapErr("open SFTP session", err)
	}
	return sc, limits, nil
}

// querySFTPLimits speaks the start of the SFTP protocol on r and w: INIT,
// VERSION, and when offered limits@openssh.com. It returns the VERSION
// packet as received (length prefix included) and the limits (nil when
// the server does not offer them or answers the request with a status).
func querySFTPLimits(r io.Reader, w io.Writer) ([]byte, *SFTPLimits, error) {
	if _, err := w.Write([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, sftpVersion}); err != nil {
		return nil, nil, fmt.Errorf("send SFTP init: %w", err)
	}
	version, err := readSFTPPacket(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read SFTP version: %w", err)
	}
	body := version[4:]
	if body[0] != fxpVersion || len(body) < 5 {
		return nil, nil, fmt.Errorf("SFTP server answered init with message type %d", body[0])
	}
	offered := false
	for ext := body[5:]; len(ext) > 0; {
		name, rest, ok := sftpString(ext)
		if !ok {
			break
		}
		_, rest, ok = sftpString(rest)
		if !ok {
			break
		}
		if name == limitsExtension {
			offered = true
		}
		ext = rest
	}
	if !offered {
		return version, nil, nil
	}
	const id = 1 // pkg/sftp numbers its own requests afresh; this one is answered before it starts
	req := binary.BigEndian.AppendUint32(nil, uint32(1+4+4+len(limitsExtension)))
	req = append(req, fxpExtended)
	req = binary.BigEndian.AppendUint32(req, id)
	req = binary.BigEndian.AppendUint32(req, uint32(len(limitsExtension)))
	req = append(req, limitsExtension...)
	if _, err := w.Write(req); err != nil {
		return nil, nil, fmt.Errorf("send SFTP %s: %w", limitsExtension, err)
	}
	reply, err := readSFTPPacket(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read SFTP %s reply: %w", limitsExtension, err)
	}
	body = reply[4:]
	if len(body) < 5 || binary.BigEndian.Uint32(body[1:5]) != id {
		return nil, nil, fmt.Errorf("SFTP %s: reply to another request", limitsExtension)
	}
	switch body[0] {
	case fxpStatus:
		return version, nil, nil // offered but refused: the defaults apply
	case fxpExtendedReply:
	default:
		return nil, nil, fmt.Errorf("SFTP %s: unexpected reply type %d", limitsExtension, body[0])
	}
	if len(body) < 5+32 {
		return nil, nil, fmt.Errorf("SFTP %s: short reply (%d bytes)", limitsExtension, len(body))
	}
	v := body[5:]
	return version, &SFTPLimits{
		MaxPacket:  binary.BigEndian.Uint64(v[0:]),
		MaxRead:    binary.BigEndian.Uint64(v[8:]),
		MaxWrite:   binary.BigEndian.Uint64(v[16:]),
		MaxHandles: binary.BigEndian.Uint64(v[24:]),
	}, nil
}

// readSFTPPacket reads one SFTP packet (uint32 length, then that many bytes,
// at least the type) and returns it with its length prefix.
func readSFTPPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > sftpMaxMessage {
		return nil, fmt.Errorf("SFTP packet of %d bytes", n)
	}
	p := make([]byte, 4+n)
	copy(p, hdr[:])
	if _, err := io.ReadFull(r, p[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}

// sftpString splits an SFTP string (uint32 length, bytes) off b.
func sftpString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

// replayReader returns pre (the VERSION packet already read) before the
// rest of r: pkg/sftp reads it as the answer to its own INIT.
type replayReader struct {
	pre []byte
	r   io.Reader
}

func (r *replayReader) Read(p []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(p, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.r.Read(p)
}

// initSkipper drops the first packet written to it, pkg/sftp's INIT (the
// server has had one), and passes everything after it on. Close closes the
// session.
type initSkipper struct {
	w    io.WriteCloser
	s    *ssh.Session
	mu   sync.Mutex
	hdr  []byte // the first packet's length prefix and type as they come in
	left int64  // bytes of the first packet's body still to drop
	done bool   // the first packet is dropped
}

func (k *initSkipper) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(p)
	if !k.done {
		if len(k.hdr) < 5 {
			take := min(5-len(k.hdr), len(p))
			k.hdr = append(k.hdr, p[:take]...)
			p = p[take:]
			if len(k.hdr) < 5 {
				return n, nil
			}
			if k.hdr[4] != fxpInit {
				return 0, fmt.Errorf("SFTP client began with message type %d, not init", k.hdr[4])
			}
			k.left = int64(binary.BigEndian.Uint32(k.hdr)) - 1
		}
		take := min(k.left, int64(len(p)))
		p = p[take:]
		k.left -= take
		if k.left > 0 {
			return n, nil
		}
		k.done = true
	}
	if len(p) > 0 {
		if _, err := k.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (k *initSkipper) Close() error {
	err := k.w.Close()
	if cerr := k.s.Close(); err == nil && cerr != nil && !errors.Is(cerr, io.EOF) {
		err = cerr
	}
	return err
}
