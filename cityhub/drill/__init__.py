"""平急演练 / the emergency drill (`cityhub drill`): switch the stack to emergency mode (急时) and back
(平时), measure how long until every department's ResourceQuotas and PriorityClass quotas are in force
on every cluster, and record the drill (its result feeds the 平急切换 dimension of cityhub.maturity).

cluster.py  what is in force in a cluster: department quotas (spec.hard vs status.hard), priority labels
record.py   the drill record (schema cityhub.io/drill/v1): the state directory and ConfigMap cityhub-drills
command.py  the CLI subcommand: the two `pulumi up`s, the polling, the checks
"""
