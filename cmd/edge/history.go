package main

import "net/http"

// serveHistory serves GET /v1/history (edgeapi.History).
func (a *app) serveHistory(mux *http.ServeMux) {}
