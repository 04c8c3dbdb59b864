package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
)

// Load tests from this tool may only target the machine they run on.

// IsLoopbackHost reports whether host (no port, IPv6 without brackets) is
// "localhost" or an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped
// ::ffff:127.x counts as 127.x). Other names are refused even if they would
// resolve to a loopback address: the check must not depend on DNS.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if strings.Contains(host, "%") { // zoned IPv6 literal
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckBaseURL validates a base URL and refuses any host that is not
// loopback. It returns the URL normalized without a trailing slash.
func CheckBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("base URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("base URL %q: scheme must be http or https", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("base URL %q: user info is not allowed", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("base URL %q: must not carry a query or fragment", raw)
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Errorf("base URL %q: missing host", raw)
	}
	if !IsLoopbackHost(host) {
		return "", fmt.Errorf("refusing base URL %q: host %q is not loopback (127.0.0.0/8, ::1, localhost); load tests may only target this machine", raw, host)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return "", fmt.Errorf("base URL %q: bad port %q", raw, p)
		}
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

var errNotLoopback = errors.New("refusing to connect: resolved address is not loopback")

// loopbackOnlyControl is a net.Dialer Control hook: the second line of
// defence, it checks the address actually dialed (after name resolution,
// so "localhost" mapped elsewhere in /etc/hosts is still refused).
func loopbackOnlyControl(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", errNotLoopback, address)
	}
	return nil
}
