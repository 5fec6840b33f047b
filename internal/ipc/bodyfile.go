package ipc

import (
	"fmt"
	"io"
	"os"
)

// tempBodyFile is bodyFile with an unlinked temporary file.
func tempBodyFile(body []byte) (*os.File, error) {
	f, err := os.CreateTemp("", "netops-message-*")
	if err != nil {
		return nil, fmt.Errorf("message body file: %w", err)
	}
	_ = os.Remove(f.Name()) // open descriptors keep it
	return fillBodyFile(f, body)
}

func fillBodyFile(f *os.File, body []byte) (*os.File, error) {
	if _, err := f.Write(body); err != nil {
		f.Close()
		return nil, fmt.Errorf("message body file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("message body file: %w", err)
	}
	return f, nil
}
