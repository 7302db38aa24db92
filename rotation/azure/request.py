"""azure-core's HttpRequest without the cost of its back-compat attribute names.

`azure.core.rest.HttpRequest` maps four legacy public names (`multipart_mixed_info`, `files`,
`data`, `body`) to private ones in a Python `__setattr__` and `__getattr__` that build a list
and compare names on every attribute set and every miss; and azure-core's Pipeline.run asks every
request for `multipart_mixed_info` and calls `prepare_multipart_body()`, both misses that end in
that `__getattr__` (and an AttributeError caught inside). For the ARM client's few requests a
call that is about a tenth of its CPU outside the transport. `Request` answers those two names
and `data` and `files` (which the transports read) directly and maps the four names with one set
look-up; a multipart/mixed request still works.
"""

from __future__ import annotations

from typing import Any

from azure.core.rest import HttpRequest
from azure.core.utils import CaseInsensitiveDict

_RENAMED = frozenset(("multipart_mixed_info", "files", "data", "body"))  # azure-core's back-compat names


class Request(HttpRequest):
    @classmethod
    def bare(cls, method: str, url: str) -> Request:
        """`Request(method, url)`: no body, no headers, no params (a GET, a poll), its attributes
        set at once (azure-core's keyword `__init__` works out a body and headers it has not got)."""
        request = cls.__new__(cls)
        vars(request).update(url=url, method=method, _files=None, _data=None, headers=CaseInsensitiveDict())
        return request

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, f"_{name}" if name in _RENAMED else name, value)

    @property
    def multipart_mixed_info(self) -> Any:
        return self.__dict__.get("_multipart_mixed_info_val")  # set by set_multipart_mixed only

    @multipart_mixed_info.setter
    def multipart_mixed_info(self, value: Any) -> None:
        self._multipart_mixed_info = value  # azure-core's own setter

    # Read by the transports on every request: the names azure-core's __getattr__ maps, answered
    # without it (set through __setattr__ above, as before).
    @property
    def data(self) -> Any:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value  # what __setattr__ does with the name

    @property
    def files(self) -> Any:
        return self._files

    @files.setter
    def files(self, value: Any) -> None:
        self._files = value

    def prepare_multipart_body(self, content_index: int = 0) -> int:
        if self.multipart_mixed_info is None:
            return content_index  # what azure-core's does for a request that is not multipart
        return int(self._prepare_multipart_body(content_index))
