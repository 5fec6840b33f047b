package config

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// Export renders c as YAML (2-space indent, fields in schema order, unset
// fields omitted). Parse(Export(c)) yields a Config equal to c, and
// exporting that again gives the same bytes. Export does not mask secrets:
// call Masked first for anything shown to a user.
func (c *Config) Export() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("export config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("export config: %w", err)
	}
	return buf.Bytes(), nil
}

// clone returns a deep copy of c, including its positions and overrides.
func (c *Config) clone() *Config {
	out := &Config{}
	deepCopy(reflect.ValueOf(out).Elem(), reflect.ValueOf(c).Elem())
	out.file = c.file
	out.pos = maps.Clone(c.pos)
	out.overrides = maps.Clone(c.overrides)
	return out
}

// deepCopy copies src into dst (same type), duplicating slices, maps and
// pointers. Unexported struct fields are skipped.
func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		deepCopy(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Struct:
		t := src.Type()
		for i := range src.NumField() {
			if t.Field(i).IsExported() {
				deepCopy(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		iter := src.MapRange()
		for iter.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			deepCopy(v, iter.Value())
			m.SetMapIndex(iter.Key(), v)
		}
		dst.Set(m)
	default:
		dst.Set(src)
	}
}
