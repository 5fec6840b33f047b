package socket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Framing is how a byte stream is cut into frames (messages).
type Framing int

const (
	// Lines: a frame is a line ended by "\n"; a "\r" before the "\n" is
	// dropped (CRLF), and a last line without "\n" before the end of the
	// stream is a frame too. Blank lines are skipped.
	Lines Framing = iota
	// Length: each frame is a 4-byte big-endian unsigned length followed by
	// that many bytes. Zero-length frames are skipped.
	Length
)

// ParseFraming parses "line" (or "lines") and "len" (or "length").
func ParseFraming(s string) (Framing, error) {
	switch s {
	case "line", "lines", "":
		return Lines, nil
	case "len", "length":
		return Length, nil
	}
	return Lines, fmt.Errorf("unknown framing %q (use line or len)", s)
}

func (f Framing) String() string {
	if f == Length {
		return "len"
	}
	return "line"
}

// DefaultMaxFrame is the default limit on the size of one frame.
const DefaultMaxFrame = 1 << 20

// ErrFrameTooLarge is returned (wrapped in a *FrameTooLargeError) by
// Reader.Next for a frame over the limit.
var ErrFrameTooLarge = errors.New("frame too large")

// FrameTooLargeError is a frame over the reader's limit. Size is the
// announced size for length-prefixed frames, 0 for a line (whose end was
// never read).
type FrameTooLargeError struct {
	Size uint64
	Max  int
}

func (e *FrameTooLargeError) Error() string {
	if e.Size > 0 {
		return fmt.Sprintf("frame of %d bytes is larger than the limit of %d bytes", e.Size, e.Max)
	}
	return fmt.Sprintf("line longer than the limit of %d bytes", e.Max)
}

func (e *FrameTooLargeError) Unwrap() error { return ErrFrameTooLarge }

// Reader reads frames from a stream.
type Reader struct {
	br      *bufio.Reader
	framing Framing
	max     int
	buf     []byte
}

// NewReader returns a Reader of frames of at most max bytes (DefaultMaxFrame
// when max <= 0).
func NewReader(r io.Reader, f Framing, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	size := 64 << 10
	if max+2 < size {
		size = max + 2
	}
	if size < 16 {
		size = 16
	}
	return &Reader{br: bufio.NewReaderSize(r, size), framing: f, max: max}
}

// Buffered reports whether complete or partial input is buffered.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Next returns the next non-empty frame. The slice is only valid until the
// next call. At the clean end of the stream it returns io.EOF; a stream
// that ends inside a length-prefixed frame gives io.ErrUnexpectedEOF; a
// frame over the limit gives a *FrameTooLargeError (the stream cannot be
// read further). Other errors are the underlying reader's.
func (r *Reader) Next() ([]byte, error) {
	for {
		var (
			b   []byte
			err error
		)
		if r.framing == Length {
			b, err = r.nextLen()
		} else {
			b, err = r.nextLine()
		}
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			return b, nil
		}
	}
}

func (r *Reader) nextLine() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.buf = append(r.buf, chunk...)
		switch {
		case err == nil:
			line := r.buf[:len(r.buf)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) > r.max {
				return nil, &FrameTooLargeError{Max: r.max}
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			// A CR may still come before the LF: allow max+1 bytes.
			if len(r.buf) > r.max+1 {
				return nil, &FrameTooLargeError{Max: r.max}
			}
		case errors.Is(err, io.EOF):
			if len(r.buf) == 0 {
				return nil, io.EOF
			}
			line := r.buf
			if n := len(line); line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) > r.max {
				return nil, &FrameTooLargeError{Max: r.max}
			}
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, nil
		default:
			return nil, err
		}
	}
}

func (r *Reader) nextLen() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("stream ended inside a frame header: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(r.max) {
		return nil, &FrameTooLargeError{Size: uint64(n), Max: r.max}
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("stream ended inside a frame of %d bytes: %w", n, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	return r.buf, nil
}

// AppendFrame appends data framed with f to dst: data and "\n" for Lines
// (the "\n" only when data does not end with one), the 4-byte big-endian
// length and data for Length.
func AppendFrame(dst []byte, f Framing, data []byte) ([]byte, error) {
	if f == Length {
		if uint64(len(data)) > math.MaxUint32 {
			return dst, fmt.Errorf("frame of %d bytes does not fit a 4-byte length", len(data))
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
		return append(dst, data...), nil
	}
	dst = append(dst, data...)
	if len(data) == 0 || data[len(data)-1] != '\n' {
		dst = append(dst, '\n')
	}
	return dst, nil
}

// WriteFrame writes data framed with f to w in one Write.
func WriteFrame(w io.Writer, f Framing, data []byte) error {
	b, err := AppendFrame(make([]byte, 0, len(data)+5), f, data)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
