package edgeconfig

import (
	"strings"
	"testing"
)

// TestSecretsSecondDocument: a second YAML document in edge.yml is refused
// with the line of its "---", not silently ignored (an operator appending
// a block after "---" would think it applied); one document, with or
// without a leading "---", and an empty file still parse.
func TestSecretsSecondDocument(t *testing.T) {
	one := "data: /tmp/edge\nlisten: {tunnels: \"198.18.0.1:7844\"}\n"
	for _, src := range []string{"", "# nothing\n", one, "---\n" + one, one + "...\n"} {
		if _, err := Parse([]byte(src)); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
	for _, tc := range []struct{ src, want string }{
		{one + "---\nlisten: {tunnels: \"198.18.0.2:7844\"}\n", "line 3: more than one YAML document"},
		{one + "---\n", "more than one YAML document"},
		{"---\n" + one + "--- \nadvertise: [x]\n", "line 4: more than one YAML document"},
		{one + "---\n: [\n", "edge config: yaml:"},
	} {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
