package schemas

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of the HTTP API (openapi.json):
// every route of api.Server.Routes, with its parameters, request bodies,
// answers and error codes. Its schemas are JSON Schema 2020-12. Tests in
// cmd/keyledger check it against the route table and validate the running
// server's answers against it.
//
//go:embed openapi.json
var OpenAPI []byte
