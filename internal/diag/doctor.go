package diag

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/netops-dev/netops/internal/diag/probe"
)

// Finding is one fact `netops diag doctor` reports about this machine.
type Finding struct {
	Item   string       `json:"item"`
	Status probe.Status `json:"status"`
	Detail string       `json:"detail"`
	Fix    string       `json:"fix,omitempty"`
}

// DoctorEnv is what Doctor reads; tests can point it at fixture files.
type DoctorEnv struct {
	ProcRoot    string // default "/proc"
	EtcRoot     string // default "/etc"
	Euid, Egid  int
	LookPath    func(string) (string, error)
	RawSocketOK func() error // opens and closes a raw ICMP socket
	ListenV6    func(ctx context.Context) error
}

// SystemDoctorEnv returns the environment of this process.
func SystemDoctorEnv() DoctorEnv {
	return DoctorEnv{
		ProcRoot: "/proc", EtcRoot: "/etc", Euid: os.Geteuid(), Egid: os.Getegid(),
		LookPath: exec.LookPath,
		RawSocketOK: func() error {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
			if err != nil {
				return err
			}
			return syscall.Close(fd)
		},
		ListenV6: func(ctx context.Context) error {
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp6", "[::1]:0")
			if err != nil {
				return err
			}
			return ln.Close()
		},
	}
}

// Doctor tells what this machine allows, so a user knows up front why a probe
// may come out UNKNOWN.
func Doctor(ctx context.Context, env DoctorEnv) []Finding {
	var out []Finding
	out = append(out, icmpFindings(env)...)
	out = append(out, nofileFinding())
	if env.ListenV6 != nil {
		if err := env.ListenV6(ctx); err != nil {
			out = append(out, Finding{Item: "ipv6", Status: probe.Warning,
				Detail: "cannot listen on [::1]: " + err.Error(), Fix: "enable IPv6 (sysctl net.ipv6.conf.all.disable_ipv6=0) to check IPv6 targets"})
		} else {
			out = append(out, Finding{Item: "ipv6", Status: probe.OK, Detail: "IPv6 loopback works"})
		}
	}
	out = append(out, resolverFinding(env))
	if env.LookPath != nil {
		if p, err := env.LookPath("iperf3"); err == nil {
			out = append(out, Finding{Item: "iperf3", Status: probe.OK, Detail: "found at " + p + " (bandwidth checks on port 5201 use it)"})
		} else {
			out = append(out, Finding{Item: "iperf3", Status: probe.OK,
				Detail: "not installed: bandwidth checks use the netops bandwidth server (netops diag bandwidth-server)"})
		}
	}
	return out
}

func icmpFindings(env DoctorEnv) []Finding {
	var out []Finding
	unpriv := false
	data, err := os.ReadFile(env.ProcRoot + "/sys/net/ipv4/ping_group_range")
	if err == nil {
		f := strings.Fields(string(data))
		if len(f) == 2 {
			lo, _ := strconv.Atoi(f[0])
			hi, _ := strconv.Atoi(f[1])
			unpriv = env.Egid >= lo && env.Egid <= hi
			detail := fmt.Sprintf("net.ipv4.ping_group_range is %s %s; this process's group is %d", f[0], f[1], env.Egid)
			if unpriv {
				out = append(out, Finding{Item: "icmp-unprivileged", Status: probe.OK, Detail: detail})
			} else {
				out = append(out, Finding{Item: "icmp-unprivileged", Status: probe.Warning, Detail: detail,
					Fix: `sysctl -w net.ipv4.ping_group_range="0 2147483647"`})
			}
		}
	} else {
		out = append(out, Finding{Item: "icmp-unprivileged", Status: probe.Unknown, Detail: "cannot read ping_group_range: " + err.Error()})
	}
	raw := Finding{Item: "icmp-raw"}
	if env.RawSocketOK == nil {
		raw.Status, raw.Detail = probe.Unknown, "not checked"
	} else if err := env.RawSocketOK(); err != nil {
		raw.Status = probe.Warning
		raw.Detail = "raw ICMP sockets not allowed: " + err.Error() + " (traceroute needs them)"
		raw.Fix = "setcap cap_net_raw+ep $(command -v netops), or run as root"
	} else {
		raw.Status, raw.Detail = probe.OK, "raw ICMP sockets allowed (euid "+strconv.Itoa(env.Euid)+")"
	}
	if raw.Status == probe.OK {
		// Unprivileged ICMP is only a convenience when raw sockets work.
		for i := range out {
			if out[i].Item == "icmp-unprivileged" && out[i].Status == probe.Warning {
				out[i].Status = probe.OK
				out[i].Detail += " (not needed: raw ICMP works)"
			}
		}
	}
	out = append(out, raw)
	if !unpriv && raw.Status != probe.OK {
		out = append(out, Finding{Item: "icmp", Status: probe.Critical,
			Detail: "neither unprivileged nor raw ICMP is allowed: icmp, latency (without a port) and traceroute checks will be UNKNOWN",
			Fix:    `sysctl -w net.ipv4.ping_group_range="0 2147483647", or setcap cap_net_raw+ep $(command -v netops)`})
	}
	return out
}

func nofileFinding() Finding {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return Finding{Item: "open-files", Status: probe.Unknown, Detail: err.Error()}
	}
	f := Finding{Item: "open-files", Status: probe.OK,
		Detail: fmt.Sprintf("soft limit %d, hard limit %d (netops raises the soft limit to the hard one for scans)", lim.Cur, lim.Max)}
	if lim.Max < 4096 {
		f.Status = probe.Warning
		f.Fix = "raise the hard limit (ulimit -Hn, /etc/security/limits.conf, LimitNOFILE= in systemd) for fast port scans"
	}
	return f
}

func resolverFinding(env DoctorEnv) Finding {
	data, err := os.ReadFile(env.EtcRoot + "/resolv.conf")
	if err != nil {
		return Finding{Item: "resolver", Status: probe.Warning, Detail: "no resolv.conf: " + err.Error(),
			Fix: "configure a DNS resolver in /etc/resolv.conf"}
	}
	var servers []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			servers = append(servers, f[1])
		}
	}
	if len(servers) == 0 {
		return Finding{Item: "resolver", Status: probe.Warning, Detail: "resolv.conf lists no nameserver",
			Fix: "add a nameserver line to /etc/resolv.conf"}
	}
	return Finding{Item: "resolver", Status: probe.OK, Detail: "nameservers: " + strings.Join(servers, ", ")}
}
