package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"syscall"
)

// Classify maps a network error to a reason code. Local resource exhaustion
// (EMFILE, ENFILE, EADDRNOTAVAIL, ENOBUFS) is ReasonResource: it says nothing
// about the remote side and must never be reported as a port or host state.
func Classify(err error) string {
	if err == nil {
		return ""
	}
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.ENOBUFS),
		errors.Is(err, syscall.ENOMEM):
		return ReasonResource
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES), errors.Is(err, os.ErrPermission):
		return ReasonPermission
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN):
		return ReasonUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTimeout
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		switch {
		case dnsErr.IsNotFound:
			return ReasonNXDomain
		case dnsErr.IsTimeout:
			return ReasonTimeout
		}
		return ReasonDNS
	}
	var certInvalid x509.CertificateInvalidError
	if errors.As(err, &certInvalid) && certInvalid.Reason == x509.Expired {
		return ReasonTLSExpired
	}
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certInvalid) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return ReasonTLS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonError
}

// StatusFor returns the status a failure with this reason gets: UNKNOWN when
// the check could not run (permission, local resources), CRITICAL otherwise.
func StatusFor(reason string) Status {
	switch reason {
	case ReasonPermission, ReasonResource:
		return Unknown
	}
	return Critical
}
