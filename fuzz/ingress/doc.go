// Package ingressfuzz holds the fuzz targets for l4proxy/ingress: the YAML
// parser and the rule matcher, checked against invariants and a slow
// reference matcher, and the canonical request path, checked against a
// slow reference and models of how Tomcat, Spring, IIS and nginx
// normalise paths. The seed corpora under testdata/fuzz are written by
// gen_seeds.go.
package ingressfuzz

//go:generate go run gen_seeds.go
