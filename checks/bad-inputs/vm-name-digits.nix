# virsh reads an all-digit name as a domain ID and would act on another domain.
{
  virtualisation.vms."25" = { };
}
