/** What every screen knows: who is signed in, which organization is shown, and the caller's role there. */
import { createContext, useContext } from 'react';
import type { OrgRole } from '../../client/src/schemas.ts';
import type { Organization } from './types.ts';

export interface ConsoleContext {
  userId: string;
  email: string;
  org: Organization;
  role: OrgRole;
  /** owner or admin: manages members, toolboxes, servers, drift, and any agent. */
  isAdmin: boolean;
  /** member or stronger: may grant their own agents. */
  isMember: boolean;
}

export const Ctx = createContext<ConsoleContext | null>(null);

export function useConsole(): ConsoleContext {
  const value = useContext(Ctx);
  if (!value) throw new Error('useConsole outside an organization');
  return value;
}

/** Roles, strongest first, as the database orders them. */
export const ROLES: OrgRole[] = ['owner', 'admin', 'member', 'viewer'];
export function atLeast(role: OrgRole, wanted: OrgRole): boolean {
  return ROLES.indexOf(role) <= ROLES.indexOf(wanted);
}
