// Package tag builds Tagway's first-party tag: tag.js (the readable source,
// embedded) minified with esbuild's Go API, and its gzip and brotli
// variants, computed once at start-up, never per request.
package tag

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
	"github.com/valyala/fasthttp"
)

//go:embed tag.js
var source string

// Asset is the built tag.
type Asset struct {
	JS     []byte // minified
	Gzip   []byte
	Brotli []byte
	// ETag is strong: a hash of the minified bytes, the same for every
	// encoding of them (RFC 9110 allows one per representation; we vary by
	// encoding with a suffix).
	ETag string
}

// placeholder is the batch path in the minified tag, replaced per variant.
const placeholder = "/__TW_BATCH_PATH__"

// Build minifies the tag and precompresses it for a batch path (e.g. "/e",
// or "/a7f3/c" for a site with its own paths).
func Build(batchPath string) (*Asset, error) {
	if !strings.HasPrefix(batchPath, "/") || strings.ContainsAny(batchPath, "\"'\\<> ") {
		return nil, fmt.Errorf("tag: batch path %q", batchPath)
	}
	res := api.Transform(source, api.TransformOptions{
		Loader:            api.LoaderJS,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		Target:            api.ES2017,
		LegalComments:     api.LegalCommentsNone,
	})
	if len(res.Errors) > 0 {
		msgs := make([]string, len(res.Errors))
		for i, e := range res.Errors {
			msgs[i] = e.Text
		}
		return nil, fmt.Errorf("tag: minifying: %s", strings.Join(msgs, "; "))
	}
	if bytes.Count(res.Code, []byte(placeholder)) != 1 {
		return nil, errors.New("tag: the minified tag lost its batch path placeholder")
	}
	a := &Asset{JS: bytes.Replace(res.Code, []byte(placeholder), []byte(batchPath), 1)}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(a.JS)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	a.Gzip = buf.Bytes()
	a.Brotli = fasthttp.AppendBrotliBytesLevel(nil, a.JS, fasthttp.CompressBrotliBestCompression)
	if len(a.Brotli) == 0 {
		return nil, errors.New("tag: brotli produced nothing")
	}
	sum := sha256.Sum256(a.JS)
	a.ETag = `"` + hex.EncodeToString(sum[:12]) + `"`
	return a, nil
}

//go:embed demo.html
var demoPage []byte

// DemoPage is the /demo page: the snippet, buttons for the standard events
// and identify, and a TCF CMP stub driven by ?tcf=.
func DemoPage() []byte { return demoPage }
