// Package state owns vmappd's state: one bbolt file, its schema and its
// migrations, and the only code that writes it. Nothing else in vmappd opens
// the file or a transaction on it.
//
// # Commands
//
// Every change is a command: a statepb.Command, whose oneof names the change
// (CreateGallery, CommitPart, ReplicaPartCopied, ReportStatus, ...). A
// domain package (catalog, ingest, replicator, auth, fleet) validates a
// request against what it reads, builds the command — choosing everything
// that is not in the file: the time, the etag of what it writes, ids, the
// sha256 of a new secret — and proposes it with DB.Propose. Apply applies it
// deterministically: it reads only the transaction and the command, so the
// same commands applied in the same order to the same file give the same
// file, which is what lets a cluster replicate the commands (a raft log)
// instead of the file.
//
// Apply re-checks what must hold at the moment of the change and can't be
// checked earlier without a race: that a name is free, that an etag still
// matches (If-Match, or the version the domain read), that a resource is not
// marked for deletion, a quota, that a replica's copy is still the one
// writing. Such a refusal is a classified error (errs) decided before
// anything is written; the proposer gets it back. Any other error means the
// transaction failed and is rolled back.
//
// Propose returns once this node's file holds the command, so a read right
// after it sees it. Where the command goes is the Log: Local applies it to
// this file at once, many concurrent commands to one transaction (group
// commit); a cluster replaces it with its replicated log, and every node
// applies the committed commands in log order. Watch registers functions
// called with every command this node applies, after it is committed: the
// goal-state streams, the credential cache and the replicator learn of
// changes that way, wherever the command was proposed.
//
// Reads stay direct: View runs a function in a read transaction, and the
// Tables (Galleries, Versions, Replicas, ...) decode records by key or scan
// a key prefix. Listings page (Page, PageOver): a page token is the last
// key returned, relative to the listing's prefix, with a checksum. A
// listing that filters reads an Index — a bucket whose keys order a
// table's records another way and map to their keys — so that a page
// costs what it returns, not what the state holds; the appliers keep each
// index in step with its table in the same transaction. DB.RecordsRead
// counts the records decoded, so tests can hold code to that.
//
// # Schema (version 9)
//
// Every value is a protobuf message, encoded deterministically. Keys join a
// record's path with NUL separators (no name can hold a NUL), so that a
// prefix scan lists a resource's children in the tenant:
//
//	meta           "schema"                               -> uint64 BE: the schema version
//	               "applied"                              -> uint64 BE: the last raft index applied (clusters)
//	galleries      tenant 0 gallery                       -> vmapp.v1.Gallery
//	applications   tenant 0 gallery 0 application         -> vmapp.v1.GalleryApplication
//	versions       tenant 0 gallery 0 application 0 num   -> vmapp.v1.GalleryApplicationVersion
//	manifests      <version key> 0 kind(1 byte)           -> vmapp.state.v1.Manifest
//	uploads        session id                             -> vmapp.state.v1.UploadSession
//	replicas       tenant 0 gallery 0 application 0 version 0 kind 0 region 0 index(2 digits)
//	                                                      -> vmapp.state.v1.Replica
//	auth_tokens    token id                               -> vmapp.state.v1.Credential (sha256 of the secret only)
//	auth_machines  tenant 0 machine                       -> id of the machine's live agent token
//	auth_shares    tenant 0 gallery 0 grantee             -> vmapp.v1.Share
//	machines       tenant 0 machine                       -> vmapp.v1.Machine (without instance view)
//	scalesets      tenant 0 scale set                     -> vmapp.v1.ScaleSet
//	instanceviews  tenant 0 machine                       -> vmapp.v1.InstanceView (what its agent reported)
//	inventory      tenant 0 machine 0 application         -> vmapp.v1.InventoryEntry (one per application
//	                                                         of an instance view: what ListInventory lists)
//	nodes          node id                                -> vmapp.v1.ClusterNode (id and addresses only)
//	signatures     <version key>                          -> vmapp.v1.VersionSignatures (a version's statement parameters and signatures)
//	trust_policies tenant 0 gallery                       -> vmapp.v1.TrustPolicy
//	sign_sequences tenant 0 gallery 0 application         -> uint64 BE: the highest statement sequence signed (kept when the application goes)
//	dirty_versions tenant 0 gallery 0 application 0 version -> the etag of the command that marked it
//	actionruns     tenant 0 machine 0 run id              -> vmapp.v1.ActionRun (a custom action's run: Pending
//	                                                         until its agent reports it; a machine's newest
//	                                                         finished runs are kept, the Pending ones are
//	                                                         in its goal state)
//	preheats       tenant 0 gallery 0 application 0 version 0 region -> vmapp.state.v1.Preheat (the machines
//	                                                         chosen to fetch a version before a rollout)
//	rollouts       tenant 0 rollout                       -> vmapp.v1.Rollout (its machines, their states and waves)
//	rollout_pins   tenant 0 machine 0 gallery/application -> vmapp.state.v1.RolloutPin: the version a rollout holds
//	                                                         the machine's application at, over its profiles
//
// The indexes map to the key of a record of their table:
//
//	machines_by_scaleset  tenant 0 scale set 0 machine              -> machines key
//	tokens_by_tenant      tenant 0 class 0 token id                 -> auth_tokens key; class "api" (people,
//	                                                                   pipelines, the operator's) or "machine"
//	inventory_by_state    tenant 0 state(lower case) 0 machine 0 application -> inventory key
//	inventory_by_app      tenant 0 name 0 machine 0 application     -> inventory key; name: after the
//	                                                                   application's last '/'
//	inventory_by_region   tenant 0 region 0 machine 0 application   -> inventory key
//	deleting_galleries    <galleries key>                           -> the same: galleries marked Deleting
//	deleting_applications <applications key>                        -> the same, applications
//	deleting_versions     <versions key>                            -> the same, versions
//	replicas_active       <replicas key>                            -> the same: replicas not Completed
//	preheats_by_target    tenant 0 "machine"|"scaleset" 0 name 0 <preheats key> -> preheats key
//	rollouts_active       tenant 0 gallery/application 0 rollout    -> rollouts key: rollouts Running, Paused
//	                                                                   or RollingBack
//	machines_own_apps     tenant 0 scale set 0 machine              -> machines key: the instances whose own
//	                                                                   profile names an application (what a
//	                                                                   change of the scale set's is checked
//	                                                                   against)
//
// dirty_versions is the replicator's queue: the appliers mark a version
// (its name as written) whenever a command may change the replica records
// it should have — FinishUpload, UpdateVersion, a version marked Deleting,
// RemoveVersion, ReplicaRemoved — and ReconcileReplicas clears the marks
// its reconcile read, unless the version was marked again since.
//
// A version's num is its three numbers zero-padded to ten digits
// ("0000000001.0000000010.0000000000"), so that byte order is numeric order
// (1.9.0 before 1.10.0); replica keys name the version as it is written.
//
// # Migrations
//
// migrations[i] upgrades a file from schema i to i+1 in one transaction
// that also records the new version; Open runs those the file needs, and
// refuses a file of a newer schema. Schema 1 was the catalog, 2 added
// uploads and manifests, 3 made this package the owner of every bucket
// (the replicator, credentials and the fleet had created theirs) and
// dropped the fleet's etag sequence: etags are chosen with the command; 4
// added signatures, trust policies and sequences; 5 the indexes, the
// inventory and dirty_versions, built from the records (dirty_versions
// starts empty: the replicator reconciles every version when it starts);
// 6 the custom actions' runs (actionruns).
// 7 preheats and preheats_by_target (empty).
// 8 rollouts, their pins and the active ones (empty).
// 9 machines_own_apps, built from the machines.
//
// # Profiles
//
// SetProfile replaces a profile if its etag (when given) and those of the
// profiles the fleet checked it against still match: a machine's is
// checked against its scale set's, a scale set's against its instances
// with applications of their own (machines_own_apps: an instance with an
// empty profile can't conflict), and the applier refuses (Aborted) a
// scale set's change whose command doesn't carry every instance that
// index holds, so that an instance that got applications meanwhile is
// not missed. Its work is in proportion to those instances, not to the
// scale set's size: the pins it drops are found from the instances'
// names in machines_by_scaleset's keys, and the active rollouts of each
// changed application are read once.
//
// # Rollouts
//
// CreateRollout stores a rollout with its machines Pending; PutRollout
// (the driver's steps, pause, resume, abort) replaces it, if its etag is
// the one read, and writes each machine's pin from its state: Updating,
// Succeeded and Failed pin the rollout's version, RollingBack, RolledBack
// and RollbackFailed the machine's previous one. A rollout that ends
// Succeeded writes its version into the profile entries (the scale set's,
// or each machine's own) and drops its pins; one RolledBack drops them; a
// Halted or Aborted one leaves them until a profile change of the
// application on the machine (SetProfile drops them, and refuses the
// change while an active rollout holds the machine) or the machine's
// deletion.
package state
