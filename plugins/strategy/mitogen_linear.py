"""The Mitogen `linear` strategy, found through this repository's ansible.cfg.

Mitogen (pinned in constraints.txt) ships its strategy plugins inside the
installed `ansible_mitogen` package; pointing `strategy_plugins` at a
site-packages path would tie ansible.cfg to one Python version and venv
location. This shim loads the same class from wherever the package is
installed, so `strategy = mitogen_linear` works from any checkout.

The plain strategy stays available: `ANSIBLE_STRATEGY=linear` (Ansible's own
switch) overrides ansible.cfg and molecule's config. ansible-core 2.19
deprecated third-party strategy plugins without a removal date
(https://docs.ansible.com/ansible/latest/porting_guide/porting_guide_core_2.19.html),
so every test tier keeps the plain strategy working too.
"""

from __future__ import annotations

from typing import Any

import ansible_mitogen.loaders
import ansible_mitogen.strategy

_Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Base):  # type: ignore[misc,valid-type]
    """Ansible's linear strategy with Mitogen's connection multiplexing.

    Plays on the controller itself (``connection: local``) run with the plain linear
    strategy: molecule's create and destroy playbooks wait on ``async`` tasks there, and
    Mitogen 0.3 never finishes those (https://github.com/mitogen-hq/mitogen/issues/835;
    seen here as "Wait for instance(s) creation to complete" retrying until it gives up).
    Nothing is lost: Mitogen speeds up remote connections, not local ones.
    """

    def run(self, iterator: Any, play_context: Any, *args: Any, **kwargs: Any) -> Any:
        if iterator._play.connection in ("local", "ansible.builtin.local"):
            return _Base.run(self, iterator, play_context, *args, **kwargs)
        return super().run(iterator, play_context, *args, **kwargs)
