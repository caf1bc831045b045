package fakenomad

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/url"
	"sync"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

var (
	functionsOnce sync.Once
	functions     map[string]function.Function
)

// jobspecFunctions is the function table of Nomad's jobspec2 (functions.go)
// minus the ones backed by modules this project does not depend on (cidr*,
// bcrypt, rsadecrypt, uuidv5, yaml*). File system functions exist but fail,
// as they do on the parse endpoint (AllowFS is false there).
func jobspecFunctions() map[string]function.Function {
	functionsOnce.Do(func() {
		functions = map[string]function.Function{
			"abs":             stdlib.AbsoluteFunc,
			"base64decode":    base64DecodeFunc,
			"base64encode":    base64EncodeFunc,
			"can":             tryfunc.CanFunc,
			"ceil":            stdlib.CeilFunc,
			"chomp":           stdlib.ChompFunc,
			"chunklist":       stdlib.ChunklistFunc,
			"coalesce":        stdlib.CoalesceFunc,
			"coalescelist":    stdlib.CoalesceListFunc,
			"compact":         stdlib.CompactFunc,
			"concat":          stdlib.ConcatFunc,
			"contains":        stdlib.ContainsFunc,
			"convert":         typeexpr.ConvertFunc,
			"csvdecode":       stdlib.CSVDecodeFunc,
			"distinct":        stdlib.DistinctFunc,
			"element":         stdlib.ElementFunc,
			"flatten":         stdlib.FlattenFunc,
			"floor":           stdlib.FloorFunc,
			"format":          stdlib.FormatFunc,
			"formatdate":      stdlib.FormatDateFunc,
			"formatlist":      stdlib.FormatListFunc,
			"indent":          stdlib.IndentFunc,
			"index":           stdlib.IndexFunc,
			"join":            stdlib.JoinFunc,
			"jsondecode":      stdlib.JSONDecodeFunc,
			"jsonencode":      stdlib.JSONEncodeFunc,
			"keys":            stdlib.KeysFunc,
			"length":          stdlib.LengthFunc,
			"log":             stdlib.LogFunc,
			"lookup":          stdlib.LookupFunc,
			"lower":           stdlib.LowerFunc,
			"max":             stdlib.MaxFunc,
			"md5":             hashFunc(md5.New),
			"merge":           stdlib.MergeFunc,
			"min":             stdlib.MinFunc,
			"parseint":        stdlib.ParseIntFunc,
			"pow":             stdlib.PowFunc,
			"range":           stdlib.RangeFunc,
			"reverse":         stdlib.ReverseFunc,
			"replace":         stdlib.ReplaceFunc,
			"regex_replace":   stdlib.RegexReplaceFunc,
			"setintersection": stdlib.SetIntersectionFunc,
			"setproduct":      stdlib.SetProductFunc,
			"setunion":        stdlib.SetUnionFunc,
			"sha1":            hashFunc(sha1.New),
			"sha256":          hashFunc(sha256.New),
			"sha512":          hashFunc(sha512.New),
			"signum":          stdlib.SignumFunc,
			"slice":           stdlib.SliceFunc,
			"sort":            stdlib.SortFunc,
			"split":           stdlib.SplitFunc,
			"strlen":          stdlib.StrlenFunc,
			"strrev":          stdlib.ReverseFunc,
			"substr":          stdlib.SubstrFunc,
			"timeadd":         stdlib.TimeAddFunc,
			"title":           stdlib.TitleFunc,
			"trim":            stdlib.TrimFunc,
			"trimprefix":      stdlib.TrimPrefixFunc,
			"trimspace":       stdlib.TrimSpaceFunc,
			"trimsuffix":      stdlib.TrimSuffixFunc,
			"try":             tryfunc.TryFunc,
			"upper":           stdlib.UpperFunc,
			"urlencode":       urlEncodeFunc,
			"uuidv4":          uuidV4Func,
			"values":          stdlib.ValuesFunc,
			"zipmap":          stdlib.ZipmapFunc,
		}
		for _, name := range []string{"abspath", "basename", "dirname", "file", "filebase64", "fileexists", "fileset", "pathexpand"} {
			functions[name] = disabledFSFunc
		}
	})
	return functions
}

var stringParam = []function.Parameter{{Name: "str", Type: cty.String}}

func stringFunc(f func(string) (string, error)) function.Function {
	return function.New(&function.Spec{
		Params: stringParam,
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, err := f(args[0].AsString())
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			return cty.StringVal(s), nil
		},
	})
}

var base64EncodeFunc = stringFunc(func(s string) (string, error) {
	return base64.StdEncoding.EncodeToString([]byte(s)), nil
})

var base64DecodeFunc = stringFunc(func(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("failed to decode base64 data %q", s)
	}
	return string(b), nil
})

var urlEncodeFunc = stringFunc(func(s string) (string, error) { return url.QueryEscape(s), nil })

func hashFunc(h func() hash.Hash) function.Function {
	return stringFunc(func(s string) (string, error) {
		sum := h()
		sum.Write([]byte(s))
		return hex.EncodeToString(sum.Sum(nil)), nil
	})
}

var uuidV4Func = function.New(&function.Spec{
	Type: function.StaticReturnType(cty.String),
	Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
		return cty.StringVal(newUUID()), nil
	},
})

var disabledFSFunc = function.New(&function.Spec{
	VarParam: &function.Parameter{Name: "args", Type: cty.DynamicPseudoType},
	Type: func([]cty.Value) (cty.Type, error) {
		return cty.DynamicPseudoType, fmt.Errorf("filesystem function disabled")
	},
	Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
		return cty.DynamicVal, fmt.Errorf("filesystem functions disabled")
	},
})

// newUUID returns a random UUID in Nomad's format.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
