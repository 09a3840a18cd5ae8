-- The state machine is public knowledge for signed-in users; nobody but its migration writes it.
revoke all on public.mcp_server_transitions from anon;
revoke insert, update, delete, truncate, references, trigger on public.mcp_server_transitions from authenticated, service_role;

create policy mcp_server_transitions_read on public.mcp_server_transitions for select to authenticated
  using (true);
