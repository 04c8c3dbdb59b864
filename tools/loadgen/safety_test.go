package main

import (
	"errors"
	"testing"
)

func TestCheckBaseURL(t *testing.T) {
	good := map[string]string{
		"http://127.0.0.1:8080":       "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/":      "http://127.0.0.1:8080",
		"http://127.1.2.3:9":          "http://127.1.2.3:9",
		"http://127.255.255.254":      "http://127.255.255.254",
		"http://localhost:8080":       "http://localhost:8080",
		"http://LocalHost:8080":       "http://LocalHost:8080",
		"https://localhost":           "https://localhost",
		"http://[::1]:8080":           "http://[::1]:8080",
		"http://[::ffff:127.0.0.1]:1": "http://[::ffff:127.0.0.1]:1",
		"http://127.0.0.1:8080/api/":  "http://127.0.0.1:8080/api",
	}
	for in, want := range good {
		got, err := CheckBaseURL(in)
		if err != nil || got != want {
			t.Errorf("CheckBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"http://10.0.0.1:8080",
		"http://192.168.1.5",
		"http://0.0.0.0:8080",
		"http://[::]:8080",
		"http://128.0.0.1",
		"http://example.com",
		"http://localhost.example.com",
		"http://127.0.0.1.nip.io",
		"http://2130706433", // decimal 127.0.0.1: not a literal we accept
		"http://0x7f000001", // hex form
		"http://127.1",      // short form
		"http://127.0.0.1@evil.com",
		"http://user:pw@127.0.0.1",
		"ftp://127.0.0.1",
		"127.0.0.1:8080",
		"http://",
		"http://127.0.0.1:8080/?x=1",
		"http://[fe80::1%25lo]:8080",
		"http://127.0.0.1:99999",
	}
	for _, in := range bad {
		if got, err := CheckBaseURL(in); err == nil {
			t.Errorf("CheckBaseURL(%q) accepted as %q", in, got)
		}
	}
}

func TestLoopbackOnlyControl(t *testing.T) {
	for _, a := range []string{"127.0.0.1:80", "[::1]:8080", "127.9.9.9:1"} {
		if err := loopbackOnlyControl("tcp", a, nil); err != nil {
			t.Errorf("%s refused: %v", a, err)
		}
	}
	for _, a := range []string{"10.1.1.1:80", "[2001:db8::1]:80", "0.0.0.0:80", "garbage"} {
		err := loopbackOnlyControl("tcp", a, nil)
		if err == nil {
			t.Errorf("%s allowed", a)
		}
		if a != "garbage" && !errors.Is(err, errNotLoopback) {
			t.Errorf("%s: wrong error %v", a, err)
		}
	}
}
