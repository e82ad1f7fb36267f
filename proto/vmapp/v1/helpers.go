package vmappv1

// Hand-written helpers on the generated API types, shared by vmappd, the
// replicator, the client and the CLI so they name and count things alike.

// Label names an artifact kind in messages: "package" or "default
// configuration". An unspecified kind means the package, as in requests.
func (k ArtifactKind) Label() string {
	if k == ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return "default configuration"
	}
	return "package"
}

// ReplicasIn returns how many replicas the profile wants in the target
// region: the region's regionalReplicaCount, else the profile's
// replicaCount, else 1.
func (pp *PublishingProfile) ReplicasIn(tr *TargetRegion) int32 {
	switch {
	case tr.RegionalReplicaCount != nil:
		return tr.GetRegionalReplicaCount()
	case pp.ReplicaCount != nil:
		return pp.GetReplicaCount()
	}
	return 1
}
