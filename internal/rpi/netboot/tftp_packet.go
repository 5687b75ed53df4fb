package netboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// TFTP error codes (RFC 1350, RFC 2347).
const (
	errUndefined    = 0
	errNotFound     = 1
	errAccess       = 2
	errIllegalOp    = 4
	errUnknownTID   = 5
	errOptionDenied = 8
)

// maxRequest is the largest request accepted (RFC 1350 keeps requests in
// one 512-byte packet; options make them longer, never this long).
const maxRequest = 1024

// maxFilename bounds a requested file name.
const maxFilename = 255

// Request is a parsed read or write request.
type Request struct {
	Write    bool     // a WRQ
	Filename string   // as sent
	Mode     string   // lower case: octet, netascii, mail
	Options  []Option // in the order sent, names lower case
}

// Option is one RFC 2347 option of a request.
type Option struct{ Name, Value string }

// Option returns the value of option name and whether it was sent.
func (r Request) Option(name string) (string, bool) {
	for _, o := range r.Options {
		if o.Name == name {
			return o.Value, true
		}
	}
	return "", false
}

// ParseRequest parses an RRQ or WRQ packet. Anything else, a request
// without its terminating NULs, an empty or over-long file name, an
// unknown mode, a duplicate option or non-printable bytes in a field is an
// error saying which.
func ParseRequest(p []byte) (Request, error) {
	if len(p) < 4 {
		return Request{}, errors.New("request shorter than 4 bytes")
	}
	if len(p) > maxRequest {
		return Request{}, fmt.Errorf("request of %d bytes, more than %d", len(p), maxRequest)
	}
	op := binary.BigEndian.Uint16(p)
	if op != opRRQ && op != opWRQ {
		return Request{}, fmt.Errorf("opcode %d is not a read or write request", op)
	}
	if p[len(p)-1] != 0 {
		return Request{}, errors.New("request does not end with a NUL byte")
	}
	fields := bytes.Split(p[2:len(p)-1], []byte{0})
	if len(fields) < 2 {
		return Request{}, errors.New("request has no transfer mode")
	}
	if len(fields)%2 != 0 {
		return Request{}, fmt.Errorf("option %q has no value", fields[len(fields)-1])
	}
	for i, f := range fields {
		for _, c := range f {
			if c < 0x20 || c > 0x7e {
				return Request{}, fmt.Errorf("field %d holds byte 0x%02x: only printable ASCII is accepted", i+1, c)
			}
		}
	}
	r := Request{Write: op == opWRQ, Filename: string(fields[0]), Mode: strings.ToLower(string(fields[1]))}
	switch {
	case r.Filename == "":
		return Request{}, errors.New("empty file name")
	case len(r.Filename) > maxFilename:
		return Request{}, fmt.Errorf("file name of %d bytes, more than %d", len(r.Filename), maxFilename)
	}
	switch r.Mode {
	case "octet", "netascii", "mail":
	default:
		return Request{}, fmt.Errorf("transfer mode %q is not octet, netascii or mail", r.Mode)
	}
	for i := 2; i < len(fields); i += 2 {
		name := strings.ToLower(string(fields[i]))
		if name == "" {
			return Request{}, errors.New("an option with an empty name")
		}
		if _, dup := r.Option(name); dup {
			return Request{}, fmt.Errorf("option %q sent twice", name)
		}
		r.Options = append(r.Options, Option{Name: name, Value: string(fields[i+1])})
	}
	return r, nil
}

// appendRequest encodes a request (the client side; tests and bench/tftp).
func appendRequest(b []byte, r Request) []byte {
	op := uint16(opRRQ)
	if r.Write {
		op = opWRQ
	}
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(append(b, r.Filename...), 0)
	b = append(append(b, r.Mode...), 0)
	for _, o := range r.Options {
		b = append(append(b, o.Name...), 0)
		b = append(append(b, o.Value...), 0)
	}
	return b
}

// errorPacket is an ERROR packet with code and message.
func errorPacket(code uint16, msg string) []byte {
	b := make([]byte, 0, 5+len(msg))
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	return append(append(b, msg...), 0)
}

// oackPacket is an OACK with the options in order.
func oackPacket(opts []Option) []byte {
	b := binary.BigEndian.AppendUint16(nil, opOACK)
	for _, o := range opts {
		b = append(append(b, o.Name...), 0)
		b = append(append(b, o.Value...), 0)
	}
	return b
}

// parseError returns the code and message of an ERROR packet.
func parseError(p []byte) (uint16, string) {
	if len(p) < 4 {
		return 0, ""
	}
	msg := p[4:]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return binary.BigEndian.Uint16(p[2:]), string(msg)
}

// parseOACK returns the options of an OACK packet.
func parseOACK(p []byte) (map[string]string, error) {
	if len(p) < 2 || binary.BigEndian.Uint16(p) != opOACK {
		return nil, errors.New("not an OACK")
	}
	out := map[string]string{}
	if len(p) == 2 {
		return out, nil
	}
	if p[len(p)-1] != 0 {
		return nil, errors.New("OACK does not end with a NUL byte")
	}
	f := bytes.Split(p[2:len(p)-1], []byte{0})
	if len(f)%2 != 0 {
		return nil, errors.New("OACK option without a value")
	}
	for i := 0; i < len(f); i += 2 {
		out[strings.ToLower(string(f[i]))] = string(f[i+1])
	}
	return out, nil
}
