package eventstore

import "github.com/nats-io/nats.go"

// MaxReplicas is the most copies keyledger asks JetStream to keep of any of
// its streams and buckets.
const MaxReplicas = 3

// ClusterReplicas is how many replicas keyledger's streams get on the NATS
// deployment nc is connected to: 1 on a single server (embedded or
// external), and on a cluster as many as it has servers the client knows of
// (the URLs given plus those the cluster announced), at most MaxReplicas.
// A server belongs to a cluster when it announces a cluster name.
func ClusterReplicas(nc *nats.Conn) int {
	if nc == nil || nc.ConnectedClusterName() == "" {
		return 1
	}
	return min(max(len(nc.Servers()), 1), MaxReplicas)
}

// replicasFor is the replica count a stream or bucket is created (or
// adopted) with: an explicit count above 1 is kept, 0 or 1 means "what the
// deployment supports" (ClusterReplicas).
func replicasFor(nc *nats.Conn, asked int) int {
	if asked > 1 {
		return asked
	}
	return ClusterReplicas(nc)
}
