"""One ComponentResource per concept of the central exchange's deployment (type tokens gdx:component:*)."""
