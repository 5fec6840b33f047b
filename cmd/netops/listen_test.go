package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/netops-dev/netops/internal/server"
)

// cmdListen is the testscript builtin `listen NAME KIND [ARG]`: it starts a real
// listener on 127.0.0.1 inside the test process for the rest of the script and
// sets $NAME to its address (host:port, or a URL for http kinds) and
// $NAME_PORT to its port. Kinds:
//
//	open              accepts and closes connections
//	closed            a port that was opened and closed again: connections are refused
//	banner TEXT       writes TEXT (with \r\n escapes) to each connection
//	silent            accepts and never writes
//	http STATUS       HTTP server answering STATUS with body "status STATUS"
//	https DAYS        HTTPS server whose certificate expires in DAYS days (negative:
//	                  expired); $NAME_CA is a file with its certificate
func cmdListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! listen")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: listen NAME KIND [ARG]")
	}
	name, kind, arg := args[0], args[1], ""
	if len(args) > 2 {
		arg = args[2]
	}
	setAddr := func(addr string) {
		_, port, _ := net.SplitHostPort(addr)
		ts.Setenv(name, addr)
		ts.Setenv(name+"_PORT", port)
	}
	switch kind {
	case "closed":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		addr := ln.Addr().String()
		ln.Close()
		setAddr(addr)
	case "open", "banner", "silent":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		ts.Defer(func() { ln.Close() })
		banner := strings.NewReplacer(`\r`, "\r", `\n`, "\n").Replace(arg)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					switch kind {
					case "banner":
						io.WriteString(c, banner)
						io.Copy(io.Discard, c)
					case "silent":
						io.Copy(io.Discard, c)
					}
				}()
			}
		}()
		setAddr(ln.Addr().String())
	case "http":
		code, err := strconv.Atoi(arg)
		ts.Check(err)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprintf(w, "status %d\n", code)
		}))
		ts.Defer(srv.Close)
		setAddr(srv.Listener.Addr().String())
		ts.Setenv(name, srv.URL)
	case "https":
		days, err := strconv.Atoi(arg)
		ts.Check(err)
		cert, pemBytes := selfSigned(ts, time.Now().Add(time.Duration(days)*24*time.Hour))
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok\n")
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		ts.Defer(srv.Close)
		setAddr(srv.Listener.Addr().String())
		ts.Setenv(name, srv.URL)
		caFile := filepath.Join(ts.Getenv("WORK"), name+"-ca.pem")
		ts.Check(os.WriteFile(caFile, pemBytes, 0o600))
		ts.Setenv(name+"_CA", caFile)
	default:
		ts.Fatalf("listen: unknown kind %q", kind)
	}
}

// selfSigned makes a certificate for 127.0.0.1 valid until notAfter.
func selfSigned(ts *testscript.TestScript, notAfter time.Time) (tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	notBefore := time.Now().Add(-48 * time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-48 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "netops test"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ts.Check(err)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes
}

// cmdEnvsubst is the testscript builtin `envsubst FILE...`: it replaces $VAR and
// ${VAR} in each file with the script's environment, so configs in a txtar
// archive can name ports that `listen` chose.
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst FILE...")
	}
	for _, f := range args {
		p := ts.MkAbs(f)
		data, err := os.ReadFile(p)
		ts.Check(err)
		ts.Check(os.WriteFile(p, []byte(os.Expand(string(data), ts.Getenv)), 0o644))
	}
}

// cmdNATSServer is the testscript builtin `natsserver NAME`: it starts an
// embedded nats-server with JetStream (internal/server) on a random loopback
// port inside the test process for the rest of the script and sets $NAME to
// its client URL.
func cmdNATSServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: natsserver NAME")
	}
	srv, err := server.Start(context.Background(), server.Options{
		Listen:   "127.0.0.1:-1",
		StoreDir: filepath.Join(ts.Getenv("WORK"), "nats-"+args[0]),
	})
	ts.Check(err)
	ts.Defer(func() { srv.Shutdown(); srv.WaitForShutdown() })
	ts.Setenv(args[0], srv.ClientURL())
}

// cmdWaitPort is the testscript builtin `waitport HOST:PORT`: it waits (up to
// 20s) until something accepts TCP connections there, for servers started in
// the background with `exec ... &`.
func cmdWaitPort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitport HOST:PORT")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nothing listens on %s: %v", args[0], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdWaitFile is the testscript builtin `waitfile PATH`: it waits (up to 20s)
// until PATH exists.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	p := ts.MkAbs(args[0])
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear", p)
		}
	}
}
