package main

import "net/http"

// serveConsoleLink serves POST /v1/console/link: a one-time login link of
// the running edge's console (`edge console link`).
func (a *app) serveConsoleLink(mux *http.ServeMux) {}
