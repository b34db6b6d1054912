from fastapi import APIRouter, Depends

from services.gateway.api.deps import TaxonomyDep, get_caller
from shared.schemas import TaxonomyNodePublic, TaxonomyPublic

router = APIRouter(prefix="/v1/taxonomy", tags=["taxonomy"], dependencies=[Depends(get_caller)])


@router.get("", response_model=TaxonomyPublic, summary="The garment taxonomy (nodes, display texts, icons)")
def read_taxonomy(taxonomy: TaxonomyDep) -> TaxonomyPublic:
    nodes = [
        TaxonomyNodePublic(name=n.name, display=n.display, icon=n.icon, parent=n.parent, depth=n.depth,
                           is_leaf=n.is_leaf, children=list(n.children))
        for n in taxonomy.nodes.values()
    ]
    return TaxonomyPublic(version=taxonomy.version, digest=taxonomy.digest, leaves=list(taxonomy.leaves), nodes=nodes)
