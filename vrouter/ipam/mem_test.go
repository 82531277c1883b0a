package ipam

import "testing"

func TestMemStoreConformance(t *testing.T) {
	testDatastoreConformance(t, func(t *testing.T) Datastore { return NewMemStore() })
}
