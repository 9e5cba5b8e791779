// Package forwardtest runs local fakes of the ad-platform APIs Tagway's
// forwarders deliver to, so tests never reach the real SaaS:
//
//   - TikTok: the TikTok Events API 2.0, POST /open_api/v1.3/event/track/
//     (NewTikTok);
//   - Meta: the Meta Conversions API, POST /{api_version}/{pixel_id}/events
//     on the Graph API (NewMeta).
//
// Each fake is an httptest.Server on 127.0.0.1 that validates requests the
// way the real API documents it and answers in that API's own format:
// TikTok's {"code","message","request_id","data"} envelope (HTTP 200 even for
// errors, as TikTok does), Meta's Graph API {"error":{...,"fbtrace_id"}} with
// a 4xx status. Every rule a fake enforces carries, next to its code, the
// page it comes from; rules the public material did not settle are marked
// "not confirmed".
//
// A fake records every request (Log), counts what it accepted and rejected,
// and counts every accepted event_id with its multiplicity (EventIDs), so a
// test can assert "delivered once" or see wire duplicates. Failures can be
// injected: SetChaos fails a random fraction of requests (HTTP 500, 429 with
// Retry-After, a held-then-dropped request, a dropped connection), RejectNext
// forces the next n answers, RejectEvents rejects requests carrying chosen
// event_ids until Accept is called. Events of a request that failed in any
// of these ways are never counted as accepted.
//
// The fakes are safe for concurrent use. They shut down through t.Cleanup;
// a request held by chaos is released then, so Cleanup never hangs.
package forwardtest
