package netboot

import (
	"bytes"
	"testing"
)

// FuzzParseRequest: no input panics the request parser, and what it
// accepts encodes back to a request it parses the same.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][]byte{
		appendRequest(nil, Request{Filename: "9ffefd01/start4.elf", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"tsize", "0"}}}),
		appendRequest(nil, Request{Filename: "a", Mode: "netascii"}),
		appendRequest(nil, Request{Write: true, Filename: "x/../y", Mode: "octet", Options: []Option{{"windowsize", "64"}, {"timeout", "1"}}}),
		{0, 1, 0, 0},
		{0, 1, 'a', 0, 'o', 'c', 't', 'e', 't', 0, 'b', 0},
		{0, 3, 0, 1},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRequest(p)
		if err != nil {
			return
		}
		again, err := ParseRequest(appendRequest(nil, r))
		if err != nil {
			t.Fatalf("re-encoded %+v does not parse: %v", r, err)
		}
		if again.Filename != r.Filename || again.Mode != r.Mode || len(again.Options) != len(r.Options) {
			t.Fatalf("re-parsed %+v, want %+v", again, r)
		}
		if _, err := splitPath(r.Filename); err == nil && (bytes.Contains([]byte(r.Filename), []byte("..")) && bytes.Contains([]byte("/"+r.Filename+"/"), []byte("/../"))) {
			t.Fatalf("splitPath accepted %q", r.Filename)
		}
	})
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		want string // error part; "" accepted
	}{
		{"pi", appendRequest(nil, Request{Filename: "9ffefd01/start4.elf", Mode: "OCTET", Options: []Option{{"BLKSIZE", "1468"}}}), ""},
		{"short", []byte{0, 1}, "shorter"},
		{"data packet", []byte{0, 3, 0, 1, 0}, "not a read or write request"},
		{"no final NUL", []byte{0, 1, 'a', 0, 'o', 'c', 't', 'e', 't'}, "NUL"},
		{"no mode", []byte{0, 1, 'a', 0}, "no transfer mode"},
		{"odd mode", appendRequest(nil, Request{Filename: "a", Mode: "binary"}), "transfer mode"},
		{"empty name", appendRequest(nil, Request{Filename: "", Mode: "octet"}), "empty file name"},
		{"control byte", appendRequest(nil, Request{Filename: "a\x01b", Mode: "octet"}), "0x01"},
		{"option without value", append(appendRequest(nil, Request{Filename: "a", Mode: "octet"}), 'x', 0), "no value"},
		{"duplicate option", appendRequest(nil, Request{Filename: "a", Mode: "octet", Options: []Option{{"tsize", "0"}, {"TSIZE", "0"}}}), "twice"},
		{"too long", appendRequest(nil, Request{Filename: string(bytes.Repeat([]byte("a"), 300)), Mode: "octet"}), "more than 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest(tt.p)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want == "":
				if v, _ := r.Option("blksize"); r.Mode != "octet" || v != "1468" {
					t.Errorf("parsed %+v", r)
				}
			case err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	lim := Limits{MaxBlockSize: 1468, MaxWindow: 16}.withDefaults()
	tests := []struct {
		name            string
		opts            []Option
		blksize, window int
		oack            string
	}{
		{"none", nil, 512, 1, ""},
		{"pi", []Option{{"blksize", "1468"}, {"tsize", "0"}}, 1468, 1, "blksize=1468 tsize=1000 "},
		{"lowered", []Option{{"blksize", "65464"}, {"windowsize", "64"}}, 1468, 16, "blksize=1468 windowsize=16 "},
		{"refused values", []Option{{"blksize", "4"}, {"tsize", "5"}, {"timeout", "0"}, {"windowsize", "x"}, {"foo", "1"}}, 512, 1, ""},
		{"timeout", []Option{{"timeout", "3"}}, 512, 1, "timeout=3 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := negotiate(Request{Options: tt.opts}, 1000, lim)
			var oack string
			for _, o := range p.oack {
				oack += o.Name + "=" + o.Value + " "
			}
			if p.blksize != tt.blksize || p.window != tt.window || oack != tt.oack {
				t.Errorf("got blksize %d window %d oack %q; want %d %d %q", p.blksize, p.window, oack, tt.blksize, tt.window, tt.oack)
			}
		})
	}
}
