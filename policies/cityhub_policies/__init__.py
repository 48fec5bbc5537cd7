"""cityhub's policy pack: the city's standards checked by `pulumi preview --policy-pack policies`."""
