// Package sign defines what vmapp signs and when a machine accepts it.
//
// A machine should run a version only if keys its operator trusts signed
// exactly what it is about to run. What is signed is a statement: the
// canonical bytes of a Version (or of a key Rotation or Revocation),
// signed with minisign's format (package sign/minisign), so that
// `minisign -V -m statement` checks a vmapp signature too.
//
// # Canonical encoding
//
// A statement is UTF-8 text: a header line, then one line per field, every
// field of its kind present, in the kind's order:
//
//	statement = "vmapp-statement v1" LF field*
//	field     = key SP length ":" value LF
//
// length is the value's size in bytes, in decimal without leading zeros;
// value is that many bytes, which may hold anything (spaces, line breaks),
// so no value can be taken for another field. The first field is "kind".
// Numbers are decimal without leading zeros; digests lower-case hex; a
// time RFC 3339 in UTC with whole seconds ("2027-01-31T00:00:00Z"); a
// flag "true" or "false"; an absent value is empty (length 0).
//
// A version (kind "version") has, in this order:
//
//	tenant, gallery, application, version    names, not empty
//	sequence                                 per application, from 1
//	expires                                  time, or empty: never
//	rollback                                 flag: an intended rollback
//	package.sha256, package.size, package.pieceRoot
//	defaultConfiguration.sha256, defaultConfiguration.size,
//	defaultConfiguration.pieceRoot           all empty/0 without one
//	install, update, remove                  the commands (update may be empty)
//	settings.packageFileName, settings.configFileName
//	settings.scriptBehaviorAfterReboot       "None" (also for empty) or "Rerun"
//	customActions                            the number of custom actions
//	customActions.I.*                        action I's fields (below)
//
// A pieceRoot is an optional digest (64 hex digits) of the artifact's piece
// manifest, for downloads that check pieces against a signed root.
//
// The custom actions are those the version offers: its own and its
// application's (the version's win by name), as they were when the
// statement was first signed. They are encoded in ascending byte order of
// their names (I from 0; two with one name are refused), each with, in
// this order:
//
//	name, script                             not empty
//	description
//	parameters                               the number of parameters
//	parameters.J.name                        not empty
//	parameters.J.required                    flag
//	parameters.J.type                        "String" (also for empty),
//	                                         "ConfigurationDataBlob" or
//	                                         "LogOutputBlob"
//	parameters.J.defaultValue, parameters.J.description
//
// under the key prefix "customActions.I.", the parameters in ascending
// byte order of their names (J from 0). So the order in which a publisher
// or vmappd lists actions and parameters never changes the bytes. A
// version without custom actions ends with "customActions 1:0", as every
// statement did before statements covered custom actions: signatures made
// then still verify, and cover no action.
//
// A rotation (kind "rotation": old key replaced by new) has old and new,
// each a public key in minisign's one-line form; a revocation (kind
// "revocation") has key, the same form, and reason, free text.
//
// The fixed vectors in testdata/ hold statements, their bytes and their
// signatures by a fixed test key; the tests check them byte for byte.
//
// # Signatures
//
// Sign signs a statement prehashed (minisign's default) with the trusted
// comment "timestamp:UNIX<TAB>statement:SUBJECT", e.g. "statement:version
// default/g1/app/1.0.0 sequence 7". The comment only explains: what
// counts is the signature over the statement's bytes. A signature whose
// trusted comment is authentic but names another subject is reported as a
// signature over another statement.
//
// # Acceptance
//
// Policy.Check accepts a version when at least Threshold distinct trusted
// keys signed its statement, it has not expired, and its sequence is not
// below the highest the machine installed for the application (unless the
// statement is an intended rollback; such a statement must expire, so
// that it can't be replayed forever). Otherwise it returns a *Refusal
// with a Reason: Unsigned, SignatureInvalid, UntrustedKey, Revoked,
// Rollback or Expired.
//
// Keys change through signed statements. A rotation "old replaced by new"
// must be signed by old, still trusted: new takes old's place, and old's
// signatures are refused from then on (re-sign what must stay installable
// with new). A revocation must be signed by the revoked key itself (a
// key's holder can always give it up, even if the key was stolen) or by
// Threshold trusted keys other than it (for a key lost, or held by someone
// who won't); once revoked, a key is never trusted again, its signatures
// are refused whatever they sign and whenever they claim to have been
// made, and no rotation can bring it back. A revocation may leave fewer
// keys than the threshold: then nothing is accepted until the operator
// trusts new keys, which is the safe way to fail.
package sign
