// Package jsonlimit bounds the shape of a JSON request body before anything
// parses it: nesting depth, object members and array elements.
//
// Size limits alone do not bound the work a body causes: 31 MB of
// three million one-character keys cost 1.3 GB and seconds of CPU in
// scanners and decoders that keep per-member state. Check is one cheap
// pass over the bytes that counts without allocating, so a body over a
// limit is refused before that cost.
package jsonlimit

import (
	"errors"
	"fmt"
)

// Limits bound one JSON document; zero fields take Default's.
type Limits struct {
	Depth    int // nesting of objects and arrays
	Members  int // object members, all objects together
	Elements int // array elements, all arrays together
}

// Default fits every real OpenAI, Anthropic and GitLab request with a wide
// margin: a chat with thousands of messages and deep tool schemas, or an
// embeddings request of millions of token ids.
var Default = Limits{Depth: 128, Members: 1 << 18, Elements: 1 << 22}

// Error says which limit a body exceeds.
type Error struct {
	What  string // "nesting depth", "object members", "array elements"
	Limit int
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("the JSON body exceeds %d %s", e.Limit, e.What)
}

// TooDeep reports whether the depth limit was hit (a malformed request,
// 400) rather than a count (a request too large, 413).
func (e *Error) TooDeep() bool { return e.What == "nesting depth" }

// ErrLimit matches every *Error with errors.Is.
var ErrLimit = errors.New("JSON limit exceeded")

// Is matches ErrLimit.
func (e *Error) Is(target error) bool { return target == ErrLimit }

// Check counts the structure of b against l. It does not validate JSON
// (the parser that runs next does); on malformed input it counts what it
// sees and returns nil if no limit is exceeded.
func Check(b []byte, l Limits) error {
	if l.Depth <= 0 {
		l.Depth = Default.Depth
	}
	if l.Members <= 0 {
		l.Members = Default.Members
	}
	if l.Elements <= 0 {
		l.Elements = Default.Elements
	}
	// stack holds '{' or '[' per open container; bounded by l.Depth and
	// on the goroutine stack for the default depth.
	var buf [128]byte
	stack := buf[:0]
	members, elements := 0, 0
	firstElem := false // just after '[': the next value is element one
	for i := 0; i < len(b); i++ {
		c := b[i]
		if firstElem && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			firstElem = false
			if c != ']' {
				if elements++; elements > l.Elements {
					return &Error{What: "array elements", Limit: l.Elements}
				}
			}
		}
		switch c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if len(stack) == l.Depth {
				return &Error{What: "nesting depth", Limit: l.Depth}
			}
			stack = append(stack, c)
			firstElem = c == '['
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ':':
			if len(stack) > 0 && stack[len(stack)-1] == '{' {
				if members++; members > l.Members {
					return &Error{What: "object members", Limit: l.Members}
				}
			}
		case ',':
			if len(stack) > 0 && stack[len(stack)-1] == '[' {
				if elements++; elements > l.Elements {
					return &Error{What: "array elements", Limit: l.Elements}
				}
			}
		}
	}
	return nil
}
