-- The DTMA outbox: admins read their organization's requests (the bearer token is never in
-- them: it is added from Vault when a request is sent); only definer functions write.
revoke all on public.dtma_requests from anon;
revoke all on public.dtma_requests from authenticated;
-- Admins see the outcome classified (status code, last_error_summary); the body, the raw
-- response and the full error are the platform's (a response may come from wherever a redirect led).
grant select (id, organization_id, toolbox_id, instance_id, operation, method, path, idempotency_key, state, attempt,
              max_attempts, timeout_ms, net_request_id, sent_at, next_attempt_at, last_status_code, last_error_summary,
              created_at, completed_at) on public.dtma_requests to authenticated;

create policy dtma_requests_read on public.dtma_requests for select to authenticated
  using (organization_id in (select private.my_org_ids('admin')));
