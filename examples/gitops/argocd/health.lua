-- Argo CD health of weir's Routes and Plugins, from the conditions the weir operator
-- writes (docs/operator.md, "Status"). Argo CD runs it with the object as `obj`; it is
-- the value of both argocd-cm keys resource.customizations.health.weir.dev_Route and
-- resource.customizations.health.weir.dev_Plugin (docs/install.md).
--
--   Degraded     Accepted, ResolvedRefs or Compiled is False, or Programmed is False
--                with reason LoadFailed or NotProgrammed, for the current generation
--   Progressing  Programmed is missing, older than the object's generation, Unknown,
--                or False for another reason (Pending: proxies not caught up yet)
--   Healthy      Programmed is True for the current generation
local hs = {}
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
local conditions = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  conditions = obj.status.conditions
end

-- A condition the operator wrote for the object as it is now, not for an older spec.
local function current(c)
  if generation == nil then
    return true
  end
  return c.observedGeneration ~= nil and c.observedGeneration >= generation
end

local function describe(c)
  return c.type .. " " .. (c.reason or "") .. ": " .. (c.message or "")
end

local programmed = nil
for _, c in ipairs(conditions) do
  if c.type == "Programmed" then
    programmed = c
  elseif current(c) and c.status == "False"
      and (c.type == "Accepted" or c.type == "ResolvedRefs" or c.type == "Compiled") then
    hs.status = "Degraded"
    hs.message = describe(c)
    return hs
  end
end

if programmed == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the weir operator"
  return hs
end
if not current(programmed) then
  hs.status = "Progressing"
  hs.message = "waiting for the weir operator to observe generation " .. tostring(generation)
  return hs
end
if programmed.status == "True" then
  hs.status = "Healthy"
  hs.message = programmed.message or ""
  return hs
end
if programmed.status == "False"
    and (programmed.reason == "LoadFailed" or programmed.reason == "NotProgrammed") then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(programmed)
return hs
