-- Tenancy: Olga founds Acme and becomes its owner; she brings in an admin (Adam), members (Mia,
-- Max) and a viewer (Vic). Admins manage membership but only owners make or unmake owners, and
-- the last owner can neither leave nor be demoted. Members create agents for themselves, in
-- their own organization only; Sam, signed in but in no organization, sees nothing of Acme, and
-- Bob, owner of Globex, nothing either.
begin;
select plan(64);

select tests.create_user('olga@acme.test') as olga \gset
select tests.create_user('adam@acme.test') as adam \gset
select tests.create_user('mia@acme.test') as mia \gset
select tests.create_user('max@acme.test') as max \gset
select tests.create_user('vic@acme.test') as vic \gset
select tests.create_user('sam@nowhere.test') as sam \gset
select tests.create_user('bob@globex.test') as bob \gset

-- Creating an organization: the caller becomes its owner.
select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select is((select created_by from public.organizations where id = :'acme'), :'olga'::uuid,
          'create_organization records its creator');
select results_eq(format('select user_id, role::text from public.organization_members where organization_id = %L', :'acme'),
                  format('values (%L::uuid, %L)', :'olga', 'owner'),
                  'the creator is the only member, as owner');
select throws_ok($$select public.create_organization('Acme again', 'acme')$$, '23505', null,
                 'a taken slug is refused (23505)');
select throws_ok($$select public.create_organization('Bad', 'Not A Slug')$$, '22023', null,
                 'a slug that is not lower-case letters, digits and dashes is refused (22023)');
select throws_ok($$select public.create_organization('', 'empty-name')$$, '22023', null,
                 'an empty name is refused (22023)');
select tests.authenticate_as_anon();
select throws_ok($$select public.create_organization('Anon Inc', 'anon-inc')$$, '42501', null,
                 'anon cannot create an organization (42501)');
select tests.authenticate_as_service_role();
select throws_ok($$select public.create_organization('Headless', 'headless')$$, '42501', null,
                 'service_role cannot create an organization: it would have no owner (42501)');
select tests.authenticate_as(:'bob');
select public.create_organization('Globex', 'globex') as globex \gset

-- Adding members: admins and owners; only an owner adds an owner.
select tests.authenticate_as(:'olga');
select lives_ok(format($$select public.add_organization_member(%L, %L, 'admin')$$, :'acme', :'adam'),
                'the owner adds an admin');
select tests.authenticate_as(:'adam');
select lives_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', :'mia'),
                'an admin adds a member (member is the default role)');
select lives_ok(format($$select public.add_organization_member(%L, %L, 'member')$$, :'acme', :'max'),
                'an admin adds another member');
select lives_ok(format($$select public.add_organization_member(%L, %L, 'viewer')$$, :'acme', :'vic'),
                'an admin adds a viewer');
select throws_ok(format($$select public.add_organization_member(%L, %L, 'owner')$$, :'acme', :'sam'), '42501', null,
                 'an admin cannot add an owner (42501)');
select throws_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', :'mia'), '23505', null,
                 'adding a member twice is refused (23505)');
select throws_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', gen_random_uuid()), 'P0002', null,
                 'adding a user who does not exist is refused (P0002)');
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', :'sam'), '42501', null,
                 'a member cannot add members (42501)');
select tests.authenticate_as(:'vic');
select throws_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', :'sam'), '42501', null,
                 'a viewer cannot add members (42501)');
select tests.authenticate_as(:'sam');
select throws_ok(format($$select public.add_organization_member(%L, %L, 'owner')$$, :'acme', :'sam'), '42501', null,
                 'a stranger cannot add themself to an organization (42501)');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', :'bob'), '42501', null,
                 'the owner of another organization cannot add members to this one (42501)');
select tests.clear_authentication();
select set_eq(format('select user_id, role::text from public.organization_members where organization_id = %L', :'acme'),
              format($$values (%L::uuid, 'owner'), (%L::uuid, 'admin'), (%L::uuid, 'member'), (%L::uuid, 'member'), (%L::uuid, 'viewer')$$,
                     :'olga', :'adam', :'mia', :'max', :'vic'),
              'Acme has its owner, an admin, two members and a viewer');

-- Changing roles: admins change non-owners; only owners make or unmake owners.
select tests.authenticate_as(:'adam');
select lives_ok(format($$select public.change_organization_member_role(%L, %L, 'admin', 'covers for Adam')$$, :'acme', :'max'),
                'an admin promotes a member to admin');
select lives_ok(format($$select public.change_organization_member_role(%L, %L, 'member')$$, :'acme', :'max'),
                'an admin demotes an admin to member');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'owner')$$, :'acme', :'mia'), '42501', null,
                 'an admin cannot make an owner (42501)');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'member')$$, :'acme', :'olga'), '42501', null,
                 'an admin cannot demote an owner (42501)');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'member')$$, :'acme', :'sam'), 'P0002', null,
                 'changing the role of a non-member is refused (P0002)');
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'member')$$, :'acme', :'vic'), '42501', null,
                 'a member cannot change roles (42501)');
select tests.authenticate_as(:'olga');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'admin')$$, :'acme', :'olga'), '23514', null,
                 'the last owner cannot be demoted (23514)');
select throws_ok(format($$select public.remove_organization_member(%L, %L)$$, :'acme', :'olga'), '23514', null,
                 'the last owner cannot leave (23514)');
select lives_ok(format($$select public.change_organization_member_role(%L, %L, 'owner', 'succession')$$, :'acme', :'adam'),
                'an owner makes an admin owner');
select lives_ok(format($$select public.change_organization_member_role(%L, %L, 'admin')$$, :'acme', :'olga'),
                'with a second owner, an owner may step down');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'member')$$, :'acme', :'adam'), '42501', null,
                 'once an admin, Olga can no longer unmake an owner (42501)');
select tests.clear_authentication();
select results_eq(format($$select action, before ->> 'role', after ->> 'role', reason, actor_id from public.audit_log
                           where entity_type = 'membership' and entity_id = %L and action = 'membership.update'
                           order by id$$, :'acme' || ':' || :'adam'),
                  format($$values ('membership.update', 'admin', 'owner', 'succession', %L::uuid)$$, :'olga'),
                  'the promotion is audited with who did it and why');
select results_eq(format($$select before ->> 'role', after ->> 'role', reason from public.audit_log
                           where entity_type = 'membership' and entity_id = %L and action = 'membership.update' order by id$$,
                         :'acme' || ':' || :'max'),
                  $$values ('member', 'admin', 'covers for Adam'), ('admin', 'member', null)$$,
                  'each role change is audited with its own reason (none given: null)');

-- Removing members: admins remove non-owners; anyone may leave, except the last owner.
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.remove_organization_member(%L, %L)$$, :'acme', :'vic'), '42501', null,
                 'a member cannot remove another member (42501)');
select tests.authenticate_as(:'olga');
select throws_ok(format($$select public.remove_organization_member(%L, %L)$$, :'acme', :'adam'), '42501', null,
                 'an admin cannot remove an owner (42501)');
select tests.authenticate_as(:'max');
select lives_ok(format($$select public.remove_organization_member(%L, %L, 'moving on')$$, :'acme', :'max'),
                'a member may leave');
select tests.authenticate_as(:'adam');
select lives_ok(format($$select public.add_organization_member(%L, %L)$$, :'acme', :'max'), 'Max comes back');
select tests.authenticate_as(:'olga');
select lives_ok(format($$select public.remove_organization_member(%L, %L, 'contract ended')$$, :'acme', :'max'),
                'an admin removes a member');
select tests.clear_authentication();
select results_eq(format($$select action, actor_id, reason from public.audit_log
                           where entity_type = 'membership' and entity_id = %L order by id$$, :'acme' || ':' || :'max'),
                  format($$values ('membership.insert', %1$L::uuid, null), ('membership.update', %1$L, 'covers for Adam'),
                                  ('membership.update', %1$L, null), ('membership.delete', %2$L, 'moving on'),
                                  ('membership.insert', %1$L, null), ('membership.delete', %3$L, 'contract ended')$$,
                         :'adam', :'max', :'olga'),
                  'Max''s whole membership history is in the audit trail, in order');

-- Organizations and memberships change only through the RPCs.
select tests.authenticate_as(:'adam');
select throws_ok(format($$insert into public.organization_members (organization_id, user_id, role) values (%L, %L, 'owner')$$,
                        :'acme', :'sam'), '42501', null, 'even an owner cannot insert a membership directly (42501)');
select throws_ok(format($$update public.organization_members set role = 'viewer' where organization_id = %L$$, :'acme'),
                 '42501', null, 'nor update memberships directly (42501)');
select throws_ok(format($$update public.organizations set name = 'Acme Corp' where id = %L$$, :'acme'), '42501', null,
                 'nor rename the organization directly (42501)');
select throws_ok(format($$delete from public.organizations where id = %L$$, :'acme'), '42501', null,
                 'nor delete it directly (42501)');

-- Reading: members see their organization; strangers and other tenants see nothing of it.
select tests.authenticate_as(:'vic');
select results_eq('select slug from public.organizations', $$values ('acme')$$, 'a viewer sees their organization');
select is((select count(*)::int from public.organization_members), 4, 'a viewer sees the four members of Acme');
select tests.authenticate_as(:'sam');
select is_empty('select * from public.organizations', 'a stranger sees no organization');
select is_empty('select * from public.organization_members', 'a stranger sees no membership');
select tests.authenticate_as(:'bob');
select results_eq('select slug from public.organizations', $$values ('globex')$$, 'another owner sees only their own organization');

-- Agents: members create their own, in their own organization; viewers cannot.
select tests.authenticate_as(:'mia');
select lives_ok(format($$insert into public.agents (organization_id, user_id, name) values (%L, %L, 'Mia''s researcher')$$,
                       :'acme', :'mia'), 'a member creates an agent of their own');
select throws_ok(format($$insert into public.agents (organization_id, user_id, name) values (%L, %L, 'for Adam')$$,
                        :'acme', :'adam'), '42501', null, 'a member cannot create an agent owned by someone else (42501)');
select throws_ok(format($$insert into public.agents (organization_id, user_id, name) values (%L, %L, 'abroad')$$,
                        :'globex', :'mia'), '42501', null, 'a member cannot create an agent in another organization (42501)');
select tests.authenticate_as(:'vic');
select throws_ok(format($$insert into public.agents (organization_id, user_id, name) values (%L, %L, 'Vic''s')$$,
                        :'acme', :'vic'), '42501', null, 'a viewer cannot create an agent (42501)');
select tests.authenticate_as(:'sam');
select throws_ok(format($$insert into public.agents (organization_id, user_id, name) values (%L, %L, 'Sam''s')$$,
                        :'acme', :'sam'), '42501', null, 'a stranger cannot create an agent in Acme (42501)');
select tests.authenticate_as(:'adam');
select lives_ok(format($$insert into public.agents (organization_id, user_id, name) values (%L, %L, 'Adam''s')$$,
                       :'acme', :'adam'), 'an owner creates an agent of their own');

select tests.clear_authentication();
select id as mia_agent from public.agents where name = 'Mia''s researcher' \gset
select id as adam_agent from public.agents where name = 'Adam''s' \gset

select tests.authenticate_as(:'mia');
select isnt_empty(format($$update public.agents set description = 'reads papers' where id = %L returning id$$, :'mia_agent'),
                  'a member updates their own agent');
select is_empty(format($$update public.agents set description = 'hijacked' where id = %L returning id$$, :'adam_agent'),
                'a member''s update of someone else''s agent is filtered out');
select is_empty(format($$delete from public.agents where id = %L returning id$$, :'adam_agent'),
                'a member''s delete of someone else''s agent is filtered out');
select throws_ok(format($$update public.agents set user_id = %L where id = %L$$, :'adam', :'mia_agent'), '42501', null,
                 'a member cannot hand their agent to someone else (42501)');
select tests.authenticate_as(:'olga');
select isnt_empty(format($$update public.agents set is_active = false where id = %L returning id$$, :'mia_agent'),
                  'an admin updates any agent of the organization');
select throws_ok(format($$update public.agents set organization_id = %L where id = %L$$, :'globex', :'mia_agent'), '55000', null,
                 'an admin cannot move an agent into another organization: no one can (55000)');
select tests.authenticate_as(:'bob');
select is_empty('select * from public.agents', 'another tenant sees none of Acme''s agents');
select is_empty(format($$update public.agents set name = 'pwned' where organization_id = %L returning id$$, :'acme'),
                'another tenant''s update of Acme''s agents is filtered out');
select tests.authenticate_as(:'mia');
select isnt_empty(format($$delete from public.agents where id = %L returning id$$, :'mia_agent'), 'a member deletes their own agent');

-- Deleting an organization (a platform operation) takes its last owner with it.
select tests.clear_authentication();
select lives_ok(format('delete from public.organizations where id = %L', :'acme'),
                'deleting the organization is not blocked by its last-owner rule');
select is_empty(format('select * from public.organization_members where organization_id = %L', :'acme'),
                'its memberships went with it');

select * from finish();
rollback;
