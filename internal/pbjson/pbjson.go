// Package pbjson is vmapp's JSON of API messages, as the CLI's -o json and
// the REST API (server/rest) write it: protojson with Azure's camelCase
// names (the protos' json_name), and 64-bit integers as numbers rather
// than protojson's strings ({"sizeBytes": 1024}), as az prints them, so
// that queries compare them and jq and JavaScript read them as numbers.
// Every 64-bit value vmappd keeps (sizes, counts, generations, retries)
// is far below 2^53, where JavaScript's numbers stop being exact.
package pbjson

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Options are protojson's options for Azure's camelCase property names.
var Options = protojson.MarshalOptions{UseProtoNames: false}

// Marshal encodes m as compact JSON with its 64-bit integers as numbers.
func Marshal(m proto.Message) ([]byte, error) {
	raw, err := Options.Marshal(m)
	if err != nil {
		return nil, err
	}
	v, err := Decode(raw)
	if err != nil {
		return nil, err
	}
	return Encode(Int64sAsNumbers(v, m.ProtoReflect().Descriptor()))
}

// Decode decodes a document keeping its numbers as written.
func Decode(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// Encode encodes v compactly, leaving <, > and & as they are (they are
// common in commands: "tar -xzf app && ./install.sh").
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Int64sAsNumbers turns the 64-bit integer fields of a message's protojson
// form (strings) into numbers, walking the message's descriptor.
func Int64sAsNumbers(v any, md protoreflect.MessageDescriptor) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if wrapper(md) {
		return v // its JSON is not an object: never reached
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		x, ok := obj[fd.JSONName()]
		if !ok {
			continue
		}
		switch {
		case fd.IsMap():
			if m, ok := x.(map[string]any); ok {
				for k, e := range m {
					m[k] = fieldNumbers(e, fd.MapValue())
				}
			}
		case fd.IsList():
			if l, ok := x.([]any); ok {
				for j, e := range l {
					l[j] = fieldNumbers(e, fd)
				}
			}
		default:
			obj[fd.JSONName()] = fieldNumbers(x, fd)
		}
	}
	return obj
}

// fieldNumbers is one value of a field, with 64-bit integers as numbers.
func fieldNumbers(v any, fd protoreflect.FieldDescriptor) any {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return stringAsNumber(v)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		if wrapper(md) {
			if k := md.Fields().ByName("value").Kind(); k == protoreflect.Int64Kind || k == protoreflect.Uint64Kind {
				return stringAsNumber(v)
			}
			return v
		}
		if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
			return v // Timestamp, Duration, Struct, ...: their own JSON forms
		}
		return Int64sAsNumbers(v, md)
	}
	return v
}

func wrapper(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.") && strings.HasSuffix(string(md.Name()), "Value") &&
		md.Fields().Len() == 1 && md.Fields().ByName("value") != nil
}

func stringAsNumber(v any) any {
	if s, ok := v.(string); ok {
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return json.Number(s)
		}
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return json.Number(s)
		}
	}
	return v
}
