package fleet

import (
	"bytes"
	"context"
	"encoding/base64"
	"sort"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// CreateMachine records a machine; one joining a scale set takes its region
// and OS from it (and must not contradict them).
func (f *Fleet) CreateMachine(ctx context.Context, tenant string, in *pb.Machine) (*pb.Machine, error) {
	if err := checkName("name", in.Name); err != nil {
		return nil, err
	}
	var out *pb.Machine
	err := f.db.Update(func(tx *bolt.Tx) error {
		m := &pb.Machine{Name: in.Name, Region: in.Region, OsType: in.OsType, ScaleSet: in.ScaleSet, Tenant: tenant}
		if m.ScaleSet != "" {
			ss, err := getScaleSet(tx, tenant, m.ScaleSet)
			if err != nil {
				return err
			}
			if m.Region != "" && m.Region != ss.Region {
				return errs.New(errs.InvalidArgument, "region", "machine '%s' is in region %s but scale set '%s' is in %s", m.Name, m.Region, ss.Name, ss.Region)
			}
			if m.OsType != "" {
				if os, err := canonicalOS("osType", m.OsType); err != nil || os != ss.OsType {
					return errs.New(errs.InvalidArgument, "osType", "machine '%s' runs %s but scale set '%s' runs %s", m.Name, m.OsType, ss.Name, ss.OsType)
				}
			}
			m.Region, m.OsType = ss.Region, ss.OsType
			ss.InstanceCount++
			if err := boltpb.Put(tx.Bucket(bucketScaleSets), key(tenant, ss.Name), ss); err != nil {
				return err
			}
		}
		if err := f.checkRegion(m.Region); err != nil {
			return err
		}
		os, err := canonicalOS("osType", m.OsType)
		if err != nil {
			return err
		}
		m.OsType = os
		b := tx.Bucket(bucketMachines)
		if b.Get(key(tenant, m.Name)) != nil {
			return errs.New(errs.AlreadyExists, "name", "Machine '%s' already exists.", m.Name)
		}
		if m.Etag, err = boltpb.NextETag(tx.Bucket(bucketMeta)); err != nil {
			return err
		}
		m.ApplicationProfile = &pb.ApplicationProfile{Etag: m.Etag}
		m.CreateTime, m.UpdateTime = f.timestamp(), f.timestamp()
		m.ProvisioningState = "Succeeded"
		out = m
		return boltpb.Put(b, key(tenant, m.Name), m)
	})
	if err != nil {
		return nil, err
	}
	f.Notify()
	return out, nil
}

// GetMachine returns a machine with its instance view.
func (f *Fleet) GetMachine(ctx context.Context, tenant, name string) (*pb.Machine, error) {
	var m *pb.Machine
	err := f.db.View(func(tx *bolt.Tx) (err error) {
		if m, err = getMachine(tx, tenant, name); err != nil {
			return err
		}
		return f.withView(tx, m)
	})
	return m, err
}

// withView adds the instance view and the provisioning state it implies.
func (f *Fleet) withView(tx *bolt.Tx, m *pb.Machine) error {
	iv := &pb.InstanceView{}
	if _, err := boltpb.Get(tx.Bucket(bucketViews), key(m.Tenant, m.Name), iv); err != nil {
		return err
	}
	f.mu.Lock()
	iv.Connected = f.connected[string(key(m.Tenant, m.Name))] > 0
	f.mu.Unlock()
	m.InstanceView = iv
	m.ProvisioningState = "Succeeded"
	for _, a := range iv.Applications {
		if a.State == "Failed" && a.TreatFailureAsDeploymentFailure {
			m.ProvisioningState = "Failed"
		}
	}
	return nil
}

// page lists a bucket's values of the tenant from an opaque token.
func page(tx *bolt.Tx, bucket []byte, tenant string, size int32, token string, each func(v []byte) (bool, error)) (string, error) {
	if size <= 0 || size > 1000 {
		size = 100
	}
	prefix := key(tenant, "")
	c := tx.Bucket(bucket).Cursor()
	start := prefix
	if token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return "", errs.New(errs.InvalidArgument, "pageToken", "pageToken '%s' is invalid", token)
		}
		start = append(append([]byte(nil), prefix...), after...)
		start = append(start, 0)
	}
	n := int32(0)
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		ok, err := each(v)
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		if n++; n == size {
			if k2, _ := c.Next(); k2 != nil && bytes.HasPrefix(k2, prefix) {
				return base64.RawURLEncoding.EncodeToString(k[len(prefix):]), nil
			}
			break
		}
	}
	return "", nil
}

// ListMachines lists the tenant's machines (of one scale set when named).
func (f *Fleet) ListMachines(ctx context.Context, tenant, scaleSet string, size int32, token string) ([]*pb.Machine, string, error) {
	var out []*pb.Machine
	var next string
	err := f.db.View(func(tx *bolt.Tx) (err error) {
		if scaleSet != "" {
			if _, err := getScaleSet(tx, tenant, scaleSet); err != nil {
				return err
			}
		}
		next, err = page(tx, bucketMachines, tenant, size, token, func(v []byte) (bool, error) {
			m := &pb.Machine{}
			if err := proto.Unmarshal(v, m); err != nil {
				return false, err
			}
			if scaleSet != "" && m.ScaleSet != scaleSet {
				return false, nil
			}
			out = append(out, m)
			return true, f.withView(tx, m)
		})
		return err
	})
	return out, next, err
}

// DeleteMachine forgets a machine and its instance view.
func (f *Fleet) DeleteMachine(ctx context.Context, tenant, name string) error {
	err := f.db.Update(func(tx *bolt.Tx) error {
		m, err := getMachine(tx, tenant, name)
		if err != nil {
			return err
		}
		return deleteMachine(tx, m)
	})
	if err == nil {
		f.Notify()
	}
	return err
}

func deleteMachine(tx *bolt.Tx, m *pb.Machine) error {
	if m.ScaleSet != "" {
		if ss, err := getScaleSet(tx, m.Tenant, m.ScaleSet); err == nil {
			ss.InstanceCount--
			if err := boltpb.Put(tx.Bucket(bucketScaleSets), key(m.Tenant, ss.Name), ss); err != nil {
				return err
			}
		}
	}
	if err := tx.Bucket(bucketViews).Delete(key(m.Tenant, m.Name)); err != nil {
		return err
	}
	return tx.Bucket(bucketMachines).Delete(key(m.Tenant, m.Name))
}

// CreateScaleSet records a scale set.
func (f *Fleet) CreateScaleSet(ctx context.Context, tenant string, in *pb.ScaleSet) (*pb.ScaleSet, error) {
	if err := checkName("name", in.Name); err != nil {
		return nil, err
	}
	if err := f.checkRegion(in.Region); err != nil {
		return nil, err
	}
	os, err := canonicalOS("osType", in.OsType)
	if err != nil {
		return nil, err
	}
	ss := &pb.ScaleSet{Name: in.Name, Region: in.Region, OsType: os, Tenant: tenant, CreateTime: f.timestamp(), UpdateTime: f.timestamp()}
	err = f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketScaleSets)
		if b.Get(key(tenant, ss.Name)) != nil {
			return errs.New(errs.AlreadyExists, "name", "Scale set '%s' already exists.", ss.Name)
		}
		var err error
		if ss.Etag, err = boltpb.NextETag(tx.Bucket(bucketMeta)); err != nil {
			return err
		}
		ss.ApplicationProfile = &pb.ApplicationProfile{Etag: ss.Etag}
		return boltpb.Put(b, key(tenant, ss.Name), ss)
	})
	if err != nil {
		return nil, err
	}
	return ss, nil
}

// GetScaleSet returns a scale set.
func (f *Fleet) GetScaleSet(ctx context.Context, tenant, name string) (*pb.ScaleSet, error) {
	var ss *pb.ScaleSet
	err := f.db.View(func(tx *bolt.Tx) (err error) {
		ss, err = getScaleSet(tx, tenant, name)
		return err
	})
	return ss, err
}

// ListScaleSets lists the tenant's scale sets.
func (f *Fleet) ListScaleSets(ctx context.Context, tenant string, size int32, token string) ([]*pb.ScaleSet, string, error) {
	var out []*pb.ScaleSet
	var next string
	err := f.db.View(func(tx *bolt.Tx) (err error) {
		next, err = page(tx, bucketScaleSets, tenant, size, token, func(v []byte) (bool, error) {
			ss := &pb.ScaleSet{}
			out = append(out, ss)
			return true, proto.Unmarshal(v, ss)
		})
		return err
	})
	return out, next, err
}

// DeleteScaleSet deletes a scale set; with instances, only with cascade
// (which deletes them too).
func (f *Fleet) DeleteScaleSet(ctx context.Context, tenant, name string, cascade bool) error {
	err := f.db.Update(func(tx *bolt.Tx) error {
		ss, err := getScaleSet(tx, tenant, name)
		if err != nil {
			return err
		}
		var instances []*pb.Machine
		c := tx.Bucket(bucketMachines).Cursor()
		prefix := key(tenant, "")
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			m := &pb.Machine{}
			if err := proto.Unmarshal(v, m); err != nil {
				return err
			}
			if m.ScaleSet == ss.Name {
				instances = append(instances, m)
			}
		}
		if len(instances) > 0 && !cascade {
			return errs.New(errs.FailedPrecondition, "cascade", "Scale set '%s' has %d instances: delete them first, or delete with cascade.", name, len(instances))
		}
		sort.Slice(instances, func(i, j int) bool { return instances[i].Name < instances[j].Name })
		for _, m := range instances {
			if err := deleteMachine(tx, m); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketScaleSets).Delete(key(tenant, name))
	})
	if err == nil {
		f.Notify()
	}
	return err
}
