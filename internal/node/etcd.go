package node

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClientConfig is the etcd client configuration of the provider and of
// checkEtcd: the node's client certificate when TLS is on, and no logging
// of its own (errors come back to us and are logged with the node's name).
func etcdClientConfig(cfg Config) clientv3.Config {
	return clientv3.Config{
		Endpoints:   cfg.Etcd,
		DialTimeout: cfg.JoinTimeout,
		TLS:         cfg.ClientTLS,
		Logger:      zap.NewNop(),
	}
}

// checkEtcd proves, before the library starts, that etcd answers this node
// under its certificate within JoinTimeout. The library's provider has no
// deadline of its own: against an unreachable etcd its StartMember hangs
// without a word.
func checkEtcd(ctx context.Context, cfg Config) error {
	c, err := clientv3.New(etcdClientConfig(cfg))
	if err != nil {
		return fmt.Errorf("%w: etcd client for %v: %w", ErrDiscovery, cfg.Etcd, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	start := time.Now()
	if _, err := c.Get(ctx, cfg.EtcdPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("%w: etcd %v did not answer within %s (is it running, and does it trust this node's certificate?): %w",
			ErrDiscovery, cfg.Etcd, time.Since(start).Round(time.Millisecond), err)
	}
	return nil
}
