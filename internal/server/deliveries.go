package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/certmon/certmon/internal/store"
)

// Delivery is one event for one destination: a channel, or the email
// address of one of a monitor's recipients.
type Delivery struct {
	ID        int64      `json:"id"`
	Event     *Event     `json:"event" doc:"the event told; null if it no longer exists"`
	ChannelID *int64     `json:"channel_id" doc:"null for an email to a monitor's recipient"`
	Address   string     `json:"address" doc:"the recipient's email address; empty for a channel"`
	Status    string     `json:"status" enum:"pending,sent,dead,skipped" doc:"pending: waiting or retrying; sent; dead: gave up after the last attempt (retry with POST .../retry); skipped: the destination did not want it or no longer exists"`
	Attempts  int        `json:"attempts" doc:"failed sends so far"`
	NextAt    time.Time  `json:"next_at" doc:"when a pending delivery is tried next"`
	LastError string     `json:"last_error"`
	LastCode  int        `json:"last_code" doc:"the receiver's last HTTP status or SMTP reply code; 0 if none"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at" doc:"null unless sent"`
}

type listDeliveriesInput struct {
	Status string `query:"status" enum:"pending,sent,dead,skipped" doc:"only deliveries in this state"`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// DeliveryList is one page of deliveries.
type DeliveryList struct {
	Deliveries []Delivery `json:"deliveries" doc:"newest first"`
	NextCursor *string    `json:"next_cursor" doc:"null on the last page"`
}

type deliveryListBody struct{ Body DeliveryList }

type deliveryBody struct{ Body Delivery }

type deliveryID struct {
	ID int64 `path:"id" minimum:"1"`
}

func (s *Server) listDeliveries(ctx context.Context, in *listDeliveriesInput) (*deliveryListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	before, err := intCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	ds, next, err := s.store.ListDeliveries(ctx, store.DeliveryFilter{
		TeamID: teamID,
		Status: in.Status,
		Before: before,
		Limit:  in.Limit,
	})
	if err != nil {
		return nil, storeError(err, "deliveries")
	}
	out := &deliveryListBody{}
	out.Body.Deliveries = mapSlice(ds, deliveryView)
	out.Body.NextCursor = nextIntCursor(next)
	return out, nil
}

// retryDelivery sends a dead (or skipped) delivery again: it is pending,
// due now, with its attempts reset.
func (s *Server) retryDelivery(ctx context.Context, in *deliveryID) (*deliveryBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	err = s.store.RetryDelivery(ctx, teamID, in.ID, s.now())
	if errors.Is(err, store.ErrConflict) {
		e := newError(http.StatusConflict, "conflict", "delivery %d is pending or sent; only dead or skipped deliveries can be retried", in.ID)
		e.cause = err
		return nil, e
	}
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("delivery %d", in.ID))
	}
	d, err := s.store.GetDelivery(ctx, teamID, in.ID)
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("delivery %d", in.ID))
	}
	return &deliveryBody{Body: deliveryView(d)}, nil
}

func deliveryView(d store.Delivery) Delivery {
	v := Delivery{
		ID:        d.ID,
		Address:   d.Address,
		Status:    d.Status,
		Attempts:  d.Attempts,
		NextAt:    d.NextAt.UTC().Truncate(time.Second),
		LastError: d.LastError,
		LastCode:  d.LastCode,
		CreatedAt: d.CreatedAt.UTC().Truncate(time.Second),
		SentAt:    timeOrNil(d.SentAt),
	}
	if d.Event.ID != 0 {
		e := eventView(d.Event)
		v.Event = &e
	}
	if d.ChannelID != 0 {
		id := d.ChannelID
		v.ChannelID = &id
	}
	return v
}
