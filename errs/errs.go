// Package errs defines vmapp's error classes and their mapping to and from
// gRPC status codes.
//
// Code below the server edge returns errors made with New (or wraps them with
// %w); the server maps them to a gRPC status with ToStatus, and the client maps
// a status back to the same class with FromStatus, so callers on both sides test
// a class with Is, never by matching message strings. The field at fault travels
// as a google.rpc.BadRequest field violation.
package errs

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Class is the kind of failure; each maps to one gRPC code.
type Class int

const (
	Internal Class = iota
	InvalidArgument
	NotFound
	AlreadyExists
	FailedPrecondition
	ResourceExhausted
	PermissionDenied
	Unauthenticated
	Unavailable
	DataLoss
	OutOfRange
	Aborted
	Canceled
	DeadlineExceeded
	Unimplemented
)

var classCodes = map[Class]codes.Code{
	Internal:           codes.Internal,
	InvalidArgument:    codes.InvalidArgument,
	NotFound:           codes.NotFound,
	AlreadyExists:      codes.AlreadyExists,
	FailedPrecondition: codes.FailedPrecondition,
	ResourceExhausted:  codes.ResourceExhausted,
	PermissionDenied:   codes.PermissionDenied,
	Unauthenticated:    codes.Unauthenticated,
	Unavailable:        codes.Unavailable,
	DataLoss:           codes.DataLoss,
	OutOfRange:         codes.OutOfRange,
	Aborted:            codes.Aborted,
	Canceled:           codes.Canceled,
	DeadlineExceeded:   codes.DeadlineExceeded,
	Unimplemented:      codes.Unimplemented,
}

// Code is the gRPC code of the class.
func (c Class) Code() codes.Code { return classCodes[c] }

func (c Class) String() string { return c.Code().String() }

// Error is a classified error. Field, when set, names the request field at
// fault in its JSON (camelCase) path, e.g. "publishingProfile.replicaCount".
type Error struct {
	Class Class
	Field string
	Msg   string
	Err   error // wrapped cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of class c about field (may be empty).
func New(c Class, field, format string, args ...any) *Error {
	return &Error{Class: c, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err, keeping it as the cause.
func Wrap(c Class, err error, format string, args ...any) *Error {
	return &Error{Class: c, Msg: fmt.Sprintf(format, args...), Err: err}
}

// ClassOf returns the class of err: the class of the outermost *Error in its
// chain, Canceled / DeadlineExceeded for context errors, Internal otherwise.
func ClassOf(err error) Class {
	var e *Error
	switch {
	case err == nil:
		return Internal
	case errors.As(err, &e):
		return e.Class
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineExceeded
	}
	if s, ok := status.FromError(err); ok {
		for c, code := range classCodes {
			if code == s.Code() {
				return c
			}
		}
	}
	return Internal
}

// Is reports whether err is of class c.
func Is(err error, c Class) bool { return err != nil && ClassOf(err) == c }

// FieldOf returns the field at fault recorded in err, or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// ToStatus converts err into a gRPC status error. Internal errors keep their
// message out of the reply (it may hold paths or addresses); the caller logs it.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		var e *Error
		if !errors.As(err, &e) {
			return err
		}
	}
	c := ClassOf(err)
	msg := err.Error()
	if c == Internal {
		msg = "internal error"
	}
	st := status.New(c.Code(), msg)
	if f := FieldOf(err); f != "" {
		if d, derr := st.WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: f, Description: msg}},
		}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// FromStatus converts a gRPC status error back into an *Error of the same
// class, with the field at fault when the status carries one.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Class: ClassOf(s.Err()), Msg: s.Message()}
	for _, d := range s.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			e.Field = br.FieldViolations[0].Field
		}
	}
	return e
}
