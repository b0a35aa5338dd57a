// Package fleetquery is Mote's fleet query language: one expression over
// things, used wherever things are selected (GET /api/v1/things?q=,
// dynamic groups, job targets, the console's search box, `mote thing list
// --query`). docs/fleet-query.md is the reference.
//
// The package is hand-written like internal/rules: a lexer, a recursive
// descent parser producing an AST (And, Or, Not, Exists, Compare, In,
// Like), a checker that resolves every field and rejects type mismatches
// at parse time, and a compiler that turns the AST into closures over a
// Doc (what a query sees of one thing). Errors carry the line and column.
// Query.String prints the canonical form; parsing it again gives the same
// query (FuzzParse checks this).
//
// Matching is pure and in memory: the index that keeps a Doc per thing
// lives in internal/fleetindex.
package fleetquery
