package node

import (
	"log/slog"

	"github.com/superhero-cluster/superhero/internal/membership"
)

// newMembershipProvider builds the cluster provider of the loopback
// default: the health endpoint on Host:HealthPort answers challenges, and
// Peers are admitted only when they prove the cookie (see package
// membership).
func newMembershipProvider(cfg Config, log *slog.Logger) (*membership.Provider, error) {
	return membership.New(membership.Config{
		HealthHost:      cfg.Host,
		HealthPort:      cfg.HealthPort,
		Peers:           cfg.Peers,
		RefreshInterval: cfg.RefreshInterval,
		Key:             membership.DeriveKey(cfg.Cookie),
		ClusterName:     cfg.ClusterName,
		Logger:          log.With(slog.String("component", "membership")),
		RejectLogWindow: cfg.LogRepeatWindow,
	})
}
