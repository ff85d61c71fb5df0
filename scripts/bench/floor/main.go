// Command floor is the benchmark's HTTP floor: a bare Echo server with one
// route, POST /api/superheroes, that decodes the same JSON body dispatch
// does and answers 201 with a hero-sized JSON body, with no cluster behind
// it. The benchmark loads it with the same clients as dispatch, so the
// ratio of the two rates says what replication and actors cost on top of
// HTTP alone on this machine.
//
//	floor -addr 127.0.0.1:4999
//
// It is built and started by scripts/bench; it is not a node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// hero has the fields and sizes of dispatch's hero JSON.
type hero struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Location     string `json:"location"`
	IsPatrolling bool   `json:"is_patrolling"`
	Health       int    `json:"health"`
	Dead         bool   `json:"dead"`
	UpdatedAt    string `json:"updated_at"`
	UpdatedBy    string `json:"updated_by"`
	Stamp        stamp  `json:"stamp"`
}

type stamp struct {
	Wall    int64  `json:"wall,string"`
	Logical uint32 `json:"logical"`
	Node    string `json:"node"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/api/superheroes", func(c echo.Context) error {
		var body struct {
			Name string `json:"name"`
		}
		if err := c.Bind(&body); err != nil {
			return err
		}
		now := time.Now().UTC()
		id := uuid.New().String()
		c.Response().Header().Set(echo.HeaderLocation, "/api/superheroes/"+id)
		return c.JSON(http.StatusCreated, hero{
			ID: id, Name: body.Name, Location: "home", Health: 100,
			UpdatedAt: now.Format(time.RFC3339Nano), UpdatedBy: "dispatch",
			Stamp: stamp{Wall: now.UnixNano(), Node: "dispatch"},
		})
	})
	srv := &http.Server{Addr: *addr, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
