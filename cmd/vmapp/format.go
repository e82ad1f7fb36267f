package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jmespath-community/go-jmespath"
	"go.yaml.in/yaml/v3"

	"github.com/vmapp/vmapp/internal/pbjson"
)

// Output formats (-o) and --query, as az has them. Every command builds
// its structured output as JSON (marshal, printIndented); emit then runs
// --query on it and prints it as JSON, YAML or TSV, or, for a query in
// table output, as a table of the result. Without --query, table output is
// each command's own.
//
// --query is JMESPath, az's query language, so that an Azure user's queries
// work as typed; jmespath-community/go-jmespath is the maintained Go
// implementation of the specification (it passes its compliance suite),
// where jmespath/go-jmespath has seen no release since 2022. gojq would
// need az users to learn jq.

var outputFormats = []string{"table", "json", "yaml", "tsv"}

// structured reports whether the output is a document (JSON, YAML, TSV, or
// a query's result) rather than the command's own table.
func (c *cli) structured() bool { return c.output != "table" || c.query != nil }

// compileQuery checks --query.
func (c *cli) compileQuery() error {
	if c.queryText == "" {
		return nil
	}
	q, err := jmespath.Compile(c.queryText)
	if err != nil {
		return usagef("--query %q: %v", c.queryText, err)
	}
	c.query = q
	return nil
}

// emit prints a JSON document as -o and --query say.
func (c *cli) emit(raw []byte) error {
	v, err := pbjson.Decode(raw)
	if err != nil {
		return err
	}
	if c.query != nil {
		if v, err = c.query.Search(numbersAsFloats(v)); err != nil {
			return runError{fmt.Errorf("--query %q: %w", c.queryText, err)}
		}
		v = integralFloatsAsNumbers(v)
	}
	var out []byte
	switch c.output {
	case "yaml":
		out, err = yaml.Marshal(typedNumbers(v))
	case "tsv":
		out = []byte(tsv(v))
	case "table":
		out = []byte(queryTable(v))
	default:
		if out, err = pbjson.Encode(v); err == nil {
			var buf bytes.Buffer
			err = json.Indent(&buf, out, "", "  ")
			out = append(buf.Bytes(), '\n')
		}
	}
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(out)
	return err
}

// mapScalars returns v with f applied to each of its scalar values, in
// place.
func mapScalars(v any, f func(any) any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = mapScalars(e, f)
		}
	case []any:
		for i, e := range x {
			x[i] = mapScalars(e, f)
		}
	default:
		return f(v)
	}
	return v
}

// numbersAsFloats gives a query numbers it can compare (JMESPath's are
// float64: exact up to 2^53, far above any size or count vmappd keeps).
func numbersAsFloats(v any) any {
	return mapScalars(v, func(v any) any {
		if n, ok := v.(json.Number); ok {
			f, _ := n.Float64()
			return f
		}
		return v
	})
}

// integralFloatsAsNumbers prints a query's whole numbers as integers
// (YAML would print 1048576 as 1.048576e+06).
func integralFloatsAsNumbers(v any) any {
	return mapScalars(v, func(v any) any {
		if x, ok := v.(float64); ok && x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(x), 10))
		}
		return v
	})
}

// typedNumbers gives json.Numbers their Go types, which YAML prints as
// numbers (it quotes a json.Number as a string).
func typedNumbers(v any) any {
	return mapScalars(v, func(v any) any {
		n, ok := v.(json.Number)
		if !ok {
			return v
		}
		if i, err := n.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return u
		}
		f, _ := n.Float64()
		return f
	})
}

// rows are the records of a document for tsv and table: a list's items; a
// list response's (an object whose "value" is a list) value; otherwise the
// document itself.
func rows(v any) []any {
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any:
		if l, ok := x["value"].([]any); ok {
			return l
		}
	case nil:
		return nil
	}
	return []any{v}
}

// scalarKeys are the keys of an object's scalar values, sorted; nested
// objects and lists have no column.
func scalarKeys(m map[string]any) []string {
	var keys []string
	for k, e := range m {
		switch e.(type) {
		case map[string]any, []any:
		default:
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case map[string]any, []any:
		b, _ := pbjson.Encode(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// tsv prints az's tsv: a line per record, its scalar values in key order
// separated by tabs, no header.
func tsv(v any) string {
	var b strings.Builder
	for _, r := range rows(v) {
		var cells []string
		if m, ok := r.(map[string]any); ok {
			for _, k := range scalarKeys(m) {
				cells = append(cells, scalar(m[k]))
			}
		} else if l, ok := r.([]any); ok {
			for _, e := range l {
				cells = append(cells, scalar(e))
			}
		} else {
			cells = []string{scalar(r)}
		}
		b.WriteString(strings.Join(cells, "\t") + "\n")
	}
	return b.String()
}

// queryTable prints a query's result in table output: columns named after
// the keys of its records (the union of their scalar keys), or one column
// of values.
func queryTable(v any) string {
	recs := rows(v)
	var keys []string
	for _, r := range recs {
		if m, ok := r.(map[string]any); ok {
			for _, k := range scalarKeys(m) {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	var b strings.Builder
	if len(keys) == 0 {
		t := newTable(&b, "RESULT")
		for _, r := range recs {
			t.row(scalar(r))
		}
		_ = t.flush()
		return b.String()
	}
	header := make([]string, len(keys))
	for i, k := range keys {
		header[i] = strings.ToUpper(k)
	}
	t := newTable(&b, header...)
	for _, r := range recs {
		m, _ := r.(map[string]any)
		cells := make([]string, len(keys))
		for i, k := range keys {
			cells[i] = scalar(m[k])
		}
		t.row(cells...)
	}
	_ = t.flush()
	return b.String()
}
