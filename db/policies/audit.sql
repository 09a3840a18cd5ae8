-- The audit trail: admins and owners read their organization's rows; nobody writes but the
-- triggers and definer functions.
revoke all on public.audit_log from anon;
revoke insert, update, delete, truncate, references, trigger on public.audit_log from authenticated, service_role;

create policy audit_log_read on public.audit_log for select to authenticated
  using (organization_id in (select private.my_org_ids('admin')));
