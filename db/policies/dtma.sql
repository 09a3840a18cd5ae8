-- The DTMA outbox: admins read their organization's requests (the bearer token is never in
-- them: it is added from Vault when a request is sent); only definer functions write.
revoke all on public.dtma_requests from anon;
revoke insert, update, delete, truncate, references, trigger on public.dtma_requests from authenticated;

create policy dtma_requests_read on public.dtma_requests for select to authenticated
  using (organization_id in (select private.my_org_ids('admin')));
